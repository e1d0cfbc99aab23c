//! Whether a replica that was ready still is: a pure state machine over health-check results and
//! connect failures (no clock, no socket), in the spirit of Envoy's outlier detection and
//! Kubernetes' liveness probes. The controller runs the probes and carries out what it returns.
//!
//! A ready replica that fails `failures_to_eject` checks in a row is ejected: it gets no new
//! requests, and those in flight run to `upstream.idle_timeout`. A connect failure on the request
//! path ejects at once (passive ejection: nothing was sent, so another replica is certain to do
//! better). An ejected replica that passes a check is admitted again; on the process backend one
//! that stays unhealthy is replaced instead.

/// What the controller should do after an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCommand {
    /// Nothing changes.
    Keep,
    /// Stop sending new requests to the replica.
    Eject,
    /// Send requests to it again.
    Readmit,
    /// Stop it and start another (process backend).
    Replace,
}

/// What the health of one ready replica looks like so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadyHealth {
    /// Failed checks in a row.
    pub consecutive_failures: u32,
    /// Whether it is out of rotation.
    pub ejected: bool,
}

/// The settings the machine needs.
#[derive(Debug, Clone, Copy)]
pub struct EjectionSettings {
    /// Failed checks in a row before ejection.
    pub failures_to_eject: u32,
    /// Whether an unhealthy replica can be replaced (process backend) or only waited for.
    pub replaceable: bool,
}

impl ReadyHealth {
    /// One health check of a ready replica.
    pub fn check(&mut self, healthy: bool, settings: EjectionSettings) -> HealthCommand {
        if healthy {
            self.consecutive_failures = 0;
            if self.ejected {
                self.ejected = false;
                return HealthCommand::Readmit;
            }
            return HealthCommand::Keep;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures < settings.failures_to_eject.max(1) {
            return HealthCommand::Keep;
        }
        if settings.replaceable {
            self.ejected = true;
            return HealthCommand::Replace;
        }
        if self.ejected {
            HealthCommand::Keep
        } else {
            self.ejected = true;
            HealthCommand::Eject
        }
    }

    /// A connect failure seen by the data plane: out of rotation until a check passes.
    pub fn connect_failed(&mut self) -> HealthCommand {
        if self.ejected {
            HealthCommand::Keep
        } else {
            self.ejected = true;
            HealthCommand::Eject
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATIC: EjectionSettings = EjectionSettings {
        failures_to_eject: 3,
        replaceable: false,
    };
    const PROCESS: EjectionSettings = EjectionSettings {
        failures_to_eject: 2,
        replaceable: true,
    };

    #[test]
    fn a_static_replica_is_ejected_after_n_failures_in_a_row_and_readmitted_when_healthy() {
        let mut h = ReadyHealth::default();
        let seen: Vec<_> = [false, false, true, false, false, false, false, true]
            .iter()
            .map(|&ok| h.check(ok, STATIC))
            .collect();
        use HealthCommand::*;
        assert_eq!(
            seen,
            vec![Keep, Keep, Keep, Keep, Keep, Eject, Keep, Readmit]
        );
        assert_eq!(h, ReadyHealth::default());
    }

    #[test]
    fn a_process_replica_that_stays_unhealthy_is_replaced() {
        let mut h = ReadyHealth::default();
        assert_eq!(h.check(false, PROCESS), HealthCommand::Keep);
        assert_eq!(h.check(false, PROCESS), HealthCommand::Replace);
    }

    #[test]
    fn a_connect_failure_ejects_at_once_and_a_passing_check_readmits() {
        let mut h = ReadyHealth::default();
        assert_eq!(h.connect_failed(), HealthCommand::Eject);
        assert_eq!(h.connect_failed(), HealthCommand::Keep);
        assert_eq!(h.check(true, STATIC), HealthCommand::Readmit);
        // Ejected by a connect failure, then failing checks: replaced on the process backend.
        assert_eq!(h.connect_failed(), HealthCommand::Eject);
        assert_eq!(h.check(false, PROCESS), HealthCommand::Keep);
        assert_eq!(h.check(false, PROCESS), HealthCommand::Replace);
    }
}
