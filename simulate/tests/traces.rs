//! Every trace format, read from real lines of the shared traces (copied here so the tests do
//! not depend on the machine), and malformed input reported with its line number.

mod common;

use common::temp_file;
use infergate_simulate::trace::{open, Arrival, Format, TraceOptions, TraceReader};
use std::time::Duration;

fn read_all(reader: &mut dyn TraceReader) -> Vec<Arrival> {
    let mut out = Vec::new();
    while let Some(a) = reader.next_arrival() {
        out.push(a.unwrap());
    }
    out
}

fn err_of(text: &str, ext: &str, format: Format) -> String {
    let path = temp_file(text, ext);
    let mut r = match open(&path, format, &TraceOptions::default()) {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    loop {
        match r.next_arrival() {
            Some(Err(e)) => return e.to_string(),
            Some(Ok(_)) => continue,
            None => panic!("no error in {text:?}"),
        }
    }
}

/// The first rows of AzureLLMInferenceTrace_conv.csv, byte for byte.
const AZURE_CONV: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n2023-11-16 18:15:51.4739520,879,42\n";

#[test]
fn azure_llm_rows_become_arrivals_relative_to_the_first() {
    let path = temp_file(AZURE_CONV, "csv");
    let mut r = open(&path, Format::Auto, &TraceOptions::default()).unwrap();
    let a = read_all(r.as_mut());
    assert_eq!(a.len(), 3);
    assert_eq!(
        (a[0].at, a[0].input_tokens, a[0].output_tokens),
        (Duration::ZERO, 374, 44)
    );
    assert_eq!(a[1].at, Duration::from_nanos(4_314_579_000));
    assert_eq!((a[2].input_tokens, a[2].output_tokens), (879, 42));
    assert_eq!(r.deployments(), ["default"]);
}

#[test]
fn the_shared_azure_traces_parse_whole_when_present() {
    for (file, rows) in [
        ("AzureLLMInferenceTrace_conv.csv", 19_366),
        ("AzureLLMInferenceTrace_code.csv", 8_819),
    ] {
        let path = std::path::Path::new("../../shared/traces/azure_llm_2023").join(file);
        let path = if path.exists() {
            path
        } else {
            std::path::Path::new("../shared/traces/azure_llm_2023").join(file)
        };
        if !path.exists() {
            continue; // not on this machine
        }
        let mut r = open(&path, Format::AzureLlm, &TraceOptions::default()).unwrap();
        assert_eq!(
            read_all(r.as_mut()).len(),
            rows,
            "{file}: every request of its README"
        );
    }
}

#[test]
fn generic_jsonl_and_csv_read_the_same_columns() {
    let jsonl = temp_file(
        "{\"t_ms\": 0, \"model\": \"a\", \"input_tokens\": 812, \"output_tokens\": 97, \"extra\": 1}\n\n{\"t_ms\": 1500.5, \"input_tokens\": 10, \"output_tokens\": 2}\n",
        "jsonl",
    );
    let csv = temp_file(
        "t_ms,model,input_tokens,output_tokens\n0,a,812,97\n1500.5,,10,2\n",
        "csv",
    );
    let options = TraceOptions {
        deployment: "fallback-name".into(),
        ..TraceOptions::default()
    };
    for path in [jsonl, csv] {
        let mut r = open(&path, Format::Auto, &options).unwrap();
        let a = read_all(r.as_mut());
        assert_eq!(
            (a[0].input_tokens, a[0].output_tokens, a[0].deployment),
            (812, 97, 0)
        );
        assert_eq!(
            (a[1].at, a[1].deployment),
            (Duration::from_micros(1_500_500), 1)
        );
        assert_eq!(r.deployments(), ["a", "fallback-name"]);
    }
}

#[test]
fn from_to_and_time_scale_cut_and_stretch_the_trace() {
    let path = temp_file("t_ms\n0\n1000\n2000\n3000\n", "csv");
    let options = TraceOptions {
        from: Some(Duration::from_secs(1)),
        to: Some(Duration::from_secs(3)),
        time_scale: 0.5,
        ..TraceOptions::default()
    };
    let mut r = open(&path, Format::Csv, &options).unwrap();
    let at: Vec<Duration> = read_all(r.as_mut()).iter().map(|a| a.at).collect();
    assert_eq!(at, [Duration::ZERO, Duration::from_millis(500)]);
}

#[test]
fn azure_functions_counts_become_that_many_arrivals_inside_each_minute() {
    // Two functions of the sampled trace's shape (3 minutes instead of 1440).
    let text = "HashFunction,HashApp,HashOwner,minute_1,minute_2,minute_3\n\
                1779fd3337dd353e,1779fd3337dd353e,1779fd3337dd353e,2,0,1\n\
                c7a3df2a3383e5b8,c7a3df2a3383e5b8,c7a3df2a3383e5b8,5,0,3\n";
    let path = temp_file(text, "csv");
    let options = TraceOptions {
        seed: 7,
        ..TraceOptions::default()
    };
    let mut r = open(&path, Format::Auto, &options).unwrap();
    let a = read_all(r.as_mut());
    assert_eq!(a.len(), 11);
    assert!(a.windows(2).all(|w| w[0].at <= w[1].at), "in time order");
    assert_eq!(
        a.iter().filter(|x| x.at < Duration::from_secs(60)).count(),
        7
    );
    assert!(a
        .iter()
        .all(|x| x.at < Duration::from_secs(60) || x.at >= Duration::from_secs(120)));
    assert_eq!(r.deployments(), ["fn-1779fd33", "fn-c7a3df2a"]);
    // --top 1 keeps the busier function; the same seed gives the same arrivals.
    let top = TraceOptions {
        top: 1,
        ..options.clone()
    };
    let mut r1 = open(&path, Format::AzureFunctions, &top).unwrap();
    assert_eq!(read_all(r1.as_mut()).len(), 8);
    assert_eq!(r1.deployments(), ["fn-c7a3df2a"]);
    let mut again = open(&path, Format::AzureFunctions, &options).unwrap();
    assert_eq!(read_all(again.as_mut()), a);
}

#[test]
fn malformed_or_unsorted_lines_name_the_file_and_line() {
    let e = err_of(
        "{\"t_ms\": 5}\n{\"t_ms\": 9}\n{\"t_ms\": \"x\"}\n",
        "jsonl",
        Format::Jsonl,
    );
    assert!(
        e.ends_with(
            ":3: not a trace record: invalid type: string \"x\", expected f64 at line 1 column 12"
        ),
        "{e}"
    );
    let e = err_of("{\"t_ms\": 5}\n{\"t_ms\": 4}\n", "jsonl", Format::Jsonl);
    assert!(
        e.contains(":2: arrivals must be sorted by time: 0.004 s comes after 0.005 s"),
        "{e}"
    );
    let e = err_of("t_ms,input_tokens\n1,2\n2,many\n", "csv", Format::Csv);
    assert!(
        e.contains(":3: input_tokens is not a whole number: \"many\""),
        "{e}"
    );
    let e = err_of(
        &format!("{}2023-13-16 18:15:51.47,1,1\n", AZURE_CONV),
        "csv",
        Format::AzureLlm,
    );
    assert!(
        e.contains(":5: TIMESTAMP is not YYYY-MM-DD HH:MM:SS.fffffff"),
        "{e}"
    );
    let e = err_of(
        "HashFunction,HashApp,HashOwner,minute_1\nf,f,f,1,2\n",
        "csv",
        Format::AzureFunctions,
    );
    assert!(e.contains(":2: expected 4 fields, got 5"), "{e}");
    let e = err_of("input_tokens\n1\n", "csv", Format::Csv);
    assert!(e.contains(":1: the header has no t_ms column"), "{e}");
}
