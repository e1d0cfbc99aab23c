//! Token counts: the prompt estimated from a request body before it is sent, and the `usage` a
//! model server reports, found in the response bytes as they stream past (JSON or SSE, split
//! anywhere across chunks) without parsing or buffering the body.

/// Bytes of a request body per prompt token, for the estimate (about 4 for English text under
/// the tokenizers of current LLMs; JSON framing makes the estimate err high, as a limit should).
const BYTES_PER_TOKEN: usize = 4;

/// Prompt tokens a request body is counted as before the model has said.
pub fn estimate_prompt_tokens(body_len: usize) -> u32 {
    u32::try_from(body_len.div_ceil(BYTES_PER_TOKEN).max(1)).unwrap_or(u32::MAX)
}

/// How many bytes of a chunk are kept to find a count split across two chunks.
const CARRY: usize = 48;

/// Finds `"prompt_tokens": N` / `"completion_tokens": N` (Chat and Completions) and
/// `"input_tokens"` / `"output_tokens"` (Responses) in a response, the last of each winning.
#[derive(Debug)]
pub struct UsageScanner {
    /// The last bytes of the previous chunk (no allocation per chunk).
    carry: [u8; CARRY],
    carried: usize,
    /// Prompt tokens, once reported.
    pub prompt: Option<u32>,
    /// Completion tokens, once reported.
    pub completion: Option<u32>,
}

impl Default for UsageScanner {
    fn default() -> Self {
        UsageScanner {
            carry: [0; CARRY],
            carried: 0,
            prompt: None,
            completion: None,
        }
    }
}

impl UsageScanner {
    /// Reads one chunk of the response body.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.carried > 0 {
            // A count split across the boundary: the previous chunk's tail with this one's head.
            let head = chunk.len().min(CARRY);
            let mut joined = [0u8; 2 * CARRY];
            joined[..self.carried].copy_from_slice(&self.carry[..self.carried]);
            joined[self.carried..self.carried + head].copy_from_slice(&chunk[..head]);
            let len = self.carried + head;
            self.scan(&joined[..len]);
        }
        self.scan(chunk);
        // Keep the last CARRY bytes seen (this chunk's, topped up from the carry if it is short).
        let mut kept = [0u8; CARRY];
        let from_chunk = chunk.len().min(CARRY);
        let from_carry = (CARRY - from_chunk).min(self.carried);
        kept[..from_carry].copy_from_slice(&self.carry[self.carried - from_carry..self.carried]);
        kept[from_carry..from_carry + from_chunk]
            .copy_from_slice(&chunk[chunk.len() - from_chunk..]);
        self.carry = kept;
        self.carried = from_carry + from_chunk;
    }

    fn scan(&mut self, buf: &[u8]) {
        const NEEDLE: &[u8] = b"_tokens\"";
        let mut from = 0;
        while let Some(at) = find(&buf[from..], NEEDLE).map(|i| i + from) {
            from = at + NEEDLE.len();
            let before = &buf[..at];
            let is = |word: &[u8]| before.ends_with(word);
            let prompt = is(b"\"prompt") || is(b"\"input");
            let completion = is(b"\"completion") || is(b"\"output");
            if !(prompt || completion) {
                continue;
            }
            let Some(n) = number_after_colon(&buf[from..]) else {
                continue;
            };
            if prompt {
                self.prompt = Some(n);
            } else {
                self.completion = Some(n);
            }
        }
    }
}

/// `: 123,` → 123; `None` when the digits may go on past the end of `rest`.
fn number_after_colon(rest: &[u8]) -> Option<u32> {
    let mut i = 0;
    while rest.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    if rest.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while rest.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    let start = i;
    while rest.get(i).is_some_and(|b| b.is_ascii_digit()) {
        i += 1;
    }
    if i == start || i == rest.len() {
        return None;
    }
    std::str::from_utf8(&rest[start..i]).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_found_in_json_and_in_the_last_sse_event() {
        let mut s = UsageScanner::default();
        s.feed(br#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"completion_tokens_details":{"reasoning_tokens":0}}}"#);
        assert_eq!((s.prompt, s.completion), (Some(12), Some(34)));
        let mut s = UsageScanner::default();
        s.feed(b"data: {\"usage\":null}\n\ndata: {\"usage\": {\"input_tokens\": 5, \"output_tokens\": 7}}\n\ndata: [DONE]\n\n");
        assert_eq!((s.prompt, s.completion), (Some(5), Some(7)));
    }

    #[test]
    fn a_count_split_across_chunks_at_any_byte_is_found() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":123,"completion_tokens":4567}}"#;
        for cut in 1..body.len() {
            let mut s = UsageScanner::default();
            s.feed(&body[..cut]);
            s.feed(&body[cut..]);
            assert_eq!(
                (s.prompt, s.completion),
                (Some(123), Some(4567)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn tiny_chunks_are_carried_over_too() {
        let body = br#"data: {"usage":{"prompt_tokens":9,"completion_tokens":77}}"#;
        let mut s = UsageScanner::default();
        for b in body.chunks(3) {
            s.feed(b);
        }
        assert_eq!((s.prompt, s.completion), (Some(9), Some(77)));
    }

    #[test]
    fn the_estimate_is_a_quarter_of_the_body() {
        assert_eq!(estimate_prompt_tokens(0), 1);
        assert_eq!(estimate_prompt_tokens(401), 101);
    }
}
