//! The order waiting requests are served in (issue 18, llm-d's flow control in small): by
//! priority band first (high, normal, low), then round-robin across the clients waiting in a band
//! (API key, else the `user` field, else one shared client), first-come first-served within a
//! client. With one client in one band it is plain FIFO.

use std::collections::{HashMap, VecDeque};

/// Something waiting, with its band (0 = high … 2 = low) and client.
pub trait InLine {
    /// Its priority band, 0 (high) to 2 (low).
    fn band(&self) -> usize;
    /// Its client (0: the shared one).
    fn client(&self) -> u64;
}

/// One band: its clients in turn, each with its own queue.
#[derive(Debug)]
struct Band<T> {
    turns: VecDeque<u64>,
    queues: HashMap<u64, VecDeque<T>>,
}

impl<T> Default for Band<T> {
    fn default() -> Self {
        Band {
            turns: VecDeque::new(),
            queues: HashMap::new(),
        }
    }
}

/// The waiting line, fair across clients.
#[derive(Debug)]
pub struct FairLine<T> {
    bands: [Band<T>; 3],
    len: usize,
}

impl<T> Default for FairLine<T> {
    fn default() -> Self {
        FairLine {
            bands: [Band::default(), Band::default(), Band::default()],
            len: 0,
        }
    }
}

impl<T: InLine> FairLine<T> {
    /// Requests in line.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Puts `item` at the end of its client's queue (its client joins the band's turns).
    pub fn push(&mut self, item: T) {
        let band = &mut self.bands[item.band().min(2)];
        let client = item.client();
        let queue = band.queues.entry(client).or_default();
        if queue.is_empty() {
            band.turns.push_back(client);
        }
        queue.push_back(item);
        self.len += 1;
    }

    /// Takes the next one: the highest band with anyone waiting, the client whose turn it is,
    /// that client's oldest.
    pub fn pop(&mut self) -> Option<T> {
        for band in &mut self.bands {
            let Some(client) = band.turns.pop_front() else {
                continue;
            };
            let queue = band.queues.get_mut(&client)?;
            let item = queue.pop_front();
            if queue.is_empty() {
                band.queues.remove(&client);
            } else {
                band.turns.push_back(client);
            }
            self.len -= usize::from(item.is_some());
            return item;
        }
        None
    }

    /// Puts back what `pop` just returned, so that it is the next one taken again.
    pub fn unpop(&mut self, item: T) {
        let band = &mut self.bands[item.band().min(2)];
        let client = item.client();
        band.turns.retain(|c| *c != client);
        band.turns.push_front(client);
        band.queues.entry(client).or_default().push_front(item);
        self.len += 1;
    }

    /// Drops every item `gone` says left (clients gone while waiting).
    pub fn retain(&mut self, keep: impl Fn(&T) -> bool) {
        for band in &mut self.bands {
            for queue in band.queues.values_mut() {
                let before = queue.len();
                queue.retain(&keep);
                self.len -= before - queue.len();
            }
            band.queues.retain(|_, q| !q.is_empty());
            let queues = &band.queues;
            band.turns.retain(|c| queues.contains_key(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct R(usize, u64, u32);

    impl InLine for R {
        fn band(&self) -> usize {
            self.0
        }
        fn client(&self) -> u64 {
            self.1
        }
    }

    fn drain(line: &mut FairLine<R>) -> Vec<(u64, u32)> {
        std::iter::from_fn(|| line.pop())
            .map(|r| (r.1, r.2))
            .collect()
    }

    #[test]
    fn one_client_is_plain_fifo() {
        let mut line = FairLine::default();
        for i in 0..5 {
            line.push(R(1, 0, i));
        }
        assert_eq!(drain(&mut line), (0..5).map(|i| (0, i)).collect::<Vec<_>>());
    }

    #[test]
    fn a_light_client_is_served_among_the_first_despite_a_heavy_one() {
        let mut line = FairLine::default();
        for i in 0..50 {
            line.push(R(1, 1, i));
        }
        for i in 0..5 {
            line.push(R(1, 2, i));
        }
        let order = drain(&mut line);
        let light: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| *c == 2)
            .map(|(i, _)| i)
            .collect();
        assert!(light.iter().all(|&i| i < 10), "{light:?}");
        // FIFO within each client.
        let heavy: Vec<u32> = order
            .iter()
            .filter(|(c, _)| *c == 1)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(heavy, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn high_beats_normal_beats_low() {
        let mut line = FairLine::default();
        line.push(R(2, 0, 0));
        line.push(R(1, 0, 1));
        line.push(R(0, 0, 2));
        assert_eq!(drain(&mut line), [(0, 2), (0, 1), (0, 0)]);
    }

    #[test]
    fn unpop_makes_it_next_again_and_retain_keeps_the_count() {
        let mut line = FairLine::default();
        line.push(R(1, 1, 0));
        line.push(R(1, 2, 0));
        line.push(R(1, 1, 1));
        let first = line.pop().unwrap();
        assert_eq!((first.1, first.2), (1, 0));
        line.unpop(first);
        assert_eq!(line.len(), 3);
        assert_eq!(line.pop().map(|r| (r.1, r.2)), Some((1, 0)));
        line.retain(|r| r.1 != 2);
        assert_eq!(line.len(), 1);
        assert_eq!(drain(&mut line), [(1, 1)]);
    }
}
