//! Leader election on a `coordination.k8s.io/v1` Lease, without I/O: what to do after each read
//! of the Lease, and whether this instance leads at a given time.
//!
//! As client-go's `leaderelection`: a follower does not trust the holder's clock — it notes
//! when it last saw the Lease change (its resourceVersion) and takes over once it has stayed
//! unchanged for a whole lease duration. A leader counts itself leader only until two thirds of
//! the duration after the start of its last successful renewal, so it steps down before anyone
//! else may take over.

use std::time::Duration;

/// What the caller does after a read of the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, holding it.
    Create,
    /// Write the Lease as holder: a renewal, or a takeover of an expired one.
    Update {
        /// The holder changes (count a transition).
        take_over: bool,
    },
    /// Someone else holds it.
    Follow {
        /// Who.
        holder: String,
    },
}

/// The Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRead {
    /// `spec.holderIdentity` (empty when released).
    pub holder: String,
    /// `metadata.resourceVersion`: changes with every write.
    pub version: String,
}

/// One instance's view of the election.
#[derive(Debug)]
pub struct Election {
    me: String,
    duration: Duration,
    /// The version last seen and when it was first seen.
    seen: Option<(String, Duration)>,
    leader_until: Option<Duration>,
}

impl Election {
    /// An instance called `me`, competing for a lease of `duration`.
    pub fn new(me: &str, duration: Duration) -> Self {
        Election {
            me: me.to_string(),
            duration,
            seen: None,
            leader_until: None,
        }
    }

    /// After reading the Lease at `now` (`None`: it does not exist).
    pub fn on_read(&mut self, now: Duration, lease: Option<LeaseRead>) -> Step {
        let Some(lease) = lease else {
            return Step::Create;
        };
        if self.seen.as_ref().is_none_or(|(v, _)| *v != lease.version) {
            self.seen = Some((lease.version.clone(), now));
        }
        if lease.holder == self.me {
            return Step::Update { take_over: false };
        }
        self.leader_until = None;
        let unchanged_since = self.seen.as_ref().map_or(now, |(_, at)| *at);
        if lease.holder.is_empty() || now >= unchanged_since + self.duration {
            return Step::Update { take_over: true };
        }
        Step::Follow {
            holder: lease.holder,
        }
    }

    /// A create or update that was sent at `sent` succeeded.
    pub fn on_written(&mut self, sent: Duration) {
        self.leader_until = Some(sent + self.duration * 2 / 3);
    }

    /// A write was refused (409: someone else wrote first).
    pub fn on_conflict(&mut self) {
        self.leader_until = None;
    }

    /// Whether this instance leads at `now`.
    pub fn is_leader(&self, now: Duration) -> bool {
        self.leader_until.is_some_and(|until| now < until)
    }

    /// How often to read and renew: a third of the duration.
    pub fn retry_period(&self) -> Duration {
        (self.duration / 3).max(Duration::from_millis(200))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn read(holder: &str, version: &str) -> Option<LeaseRead> {
        Some(LeaseRead {
            holder: holder.to_string(),
            version: version.to_string(),
        })
    }

    #[test]
    fn the_first_instance_creates_the_lease_and_leads_until_two_thirds_of_it() {
        let mut e = Election::new("a", 15 * S);
        assert_eq!(e.on_read(Duration::ZERO, None), Step::Create);
        assert!(!e.is_leader(Duration::ZERO));
        e.on_written(Duration::ZERO);
        assert!(e.is_leader(9 * S));
        assert!(
            !e.is_leader(10 * S),
            "steps down before others may take over"
        );
        assert_eq!(
            e.on_read(5 * S, read("a", "2")),
            Step::Update { take_over: false }
        );
    }

    #[test]
    fn a_follower_takes_over_only_after_the_lease_stayed_unchanged_for_its_duration() {
        let mut b = Election::new("b", 15 * S);
        assert_eq!(
            b.on_read(Duration::ZERO, read("a", "1")),
            Step::Follow { holder: "a".into() }
        );
        // a renews: the clock restarts.
        assert_eq!(
            b.on_read(10 * S, read("a", "2")),
            Step::Follow { holder: "a".into() }
        );
        assert_eq!(
            b.on_read(24 * S, read("a", "2")),
            Step::Follow { holder: "a".into() }
        );
        assert_eq!(
            b.on_read(25 * S, read("a", "2")),
            Step::Update { take_over: true }
        );
        // Two takers: the loser's write conflicts and it follows.
        b.on_conflict();
        assert!(!b.is_leader(25 * S));
        assert_eq!(
            b.on_read(26 * S, read("c", "3")),
            Step::Follow { holder: "c".into() }
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_a_leader_that_lost_it_follows() {
        let mut b = Election::new("b", 15 * S);
        assert_eq!(
            b.on_read(Duration::ZERO, read("", "7")),
            Step::Update { take_over: true }
        );
        b.on_written(Duration::ZERO);
        assert!(b.is_leader(S));
        assert_eq!(
            b.on_read(2 * S, read("c", "8")),
            Step::Follow { holder: "c".into() }
        );
        assert!(!b.is_leader(2 * S));
    }
}
