//! Scenario timelines: what each device reports at a given moment of the run.
//!
//! Times are fractions of `--duration` so a short demo and a long soak have the same shape:
//!
//! | scenario | timeline |
//! | --- | --- |
//! | `steady` | the mix of [`super::fleet::MIX_PER_MILLE`] throughout |
//! | `sync-lag` | at 20 % a tenth of the healthy hybrid devices are re-imaged: they report `DSREG_E_DIRECTORY_FAILURE` / `device_not_synced`; at 60 % Entra Connect has synced them and they report hybrid joined again |
//! | `tenant-not-found` | at 20 % a tenth of the healthy devices start failing with 0x801c03f2 / AADSTS90002 (`tenant_not_found`) and never heal |
//! | `outage` | from 30 % to 60 % nothing is sent (the collector is "down"); at 60 % every device reconnects at once, unthrottled — the reconnect storm — then steady again |
//!
//! A device whose state changes reports at once (the agent sends changed snapshots
//! immediately); [`Timeline::transition`] names the moments when that happens.

use super::fleet::{Profile, mix};

/// The scenarios of `simulate --scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// The steady mix.
    Steady,
    /// Re-imaging burst of device_not_synced that heals.
    SyncLag,
    /// Burst of tenant_not_found that does not heal.
    TenantNotFound,
    /// No sends for a while, then a reconnect storm.
    Outage,
}

/// Where a burst starts, as a fraction of the run.
pub const BURST_AT: f64 = 0.2;
/// Where a sync-lag burst heals.
pub const HEAL_AT: f64 = 0.6;
/// Outage window.
pub const OUTAGE: (f64, f64) = (0.3, 0.6);
/// Share (per mille) of the healthy hybrid devices hit by a burst.
pub const BURST_PER_MILLE: u64 = 100;

/// The stage of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Normal operation.
    Normal,
    /// The burst is on (sync-lag, tenant-not-found).
    Burst,
    /// The burst healed (sync-lag, after [`HEAL_AT`]).
    Healed,
    /// Nothing is sent (outage).
    Outage,
    /// After the outage: the reconnect storm has been queued, steady again.
    Reconnected,
}

/// A scenario over a run of known length.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// The scenario.
    pub scenario: Scenario,
    /// Seed of the fleet (picks the devices a burst hits).
    pub seed: u64,
}

impl Timeline {
    /// The stage at `progress` (0.0 = start, 1.0 = end of `--duration`).
    pub fn stage(&self, progress: f64) -> Stage {
        match self.scenario {
            Scenario::Steady => Stage::Normal,
            Scenario::SyncLag if progress >= HEAL_AT => Stage::Healed,
            Scenario::SyncLag | Scenario::TenantNotFound if progress >= BURST_AT => Stage::Burst,
            Scenario::SyncLag | Scenario::TenantNotFound => Stage::Normal,
            Scenario::Outage if progress >= OUTAGE.1 => Stage::Reconnected,
            Scenario::Outage if progress >= OUTAGE.0 => Stage::Outage,
            Scenario::Outage => Stage::Normal,
        }
    }

    /// True when device `index` (whose steady profile is `base`) is hit by this run's burst.
    pub fn in_burst(&self, index: u64, base: Profile) -> bool {
        matches!(self.scenario, Scenario::SyncLag | Scenario::TenantNotFound)
            && base.is_healthy_hybrid()
            && mix(self.seed ^ 0x6275_7273 ^ mix(index)) % 1000 < BURST_PER_MILLE
    }

    /// What device `index` reports at `stage`.
    pub fn profile(&self, index: u64, base: Profile, stage: Stage) -> Profile {
        if stage == Stage::Burst && self.in_burst(index, base) {
            match self.scenario {
                Scenario::SyncLag => Profile::DeviceNotSynced,
                _ => Profile::TenantNotFound,
            }
        } else {
            base
        }
    }

    /// Stage changes after which devices report at once: `Some(true)` when every device
    /// reconnects (the storm), `Some(false)` when only the burst's devices do.
    pub fn transition(&self, from: Stage, to: Stage) -> Option<bool> {
        match (from, to) {
            (a, b) if a == b => None,
            (Stage::Outage, Stage::Reconnected) => Some(true),
            (_, Stage::Burst) | (Stage::Burst, Stage::Healed) => Some(false),
            _ => None,
        }
    }

    /// False while nothing may be sent.
    pub fn sending(&self, stage: Stage) -> bool {
        stage != Stage::Outage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::fleet::profile_of;

    #[test]
    fn sync_lag_bursts_then_heals_the_same_devices() {
        let t = Timeline {
            scenario: Scenario::SyncLag,
            seed: 5,
        };
        assert_eq!(t.stage(0.1), Stage::Normal);
        assert_eq!(t.stage(0.3), Stage::Burst);
        assert_eq!(t.stage(0.7), Stage::Healed);
        assert_eq!(t.transition(Stage::Normal, Stage::Burst), Some(false));
        assert_eq!(t.transition(Stage::Burst, Stage::Healed), Some(false));
        let hit: Vec<u64> = (0..10_000)
            .filter(|&i| t.in_burst(i, profile_of(5, i)))
            .collect();
        let healthy = (0..10_000)
            .filter(|&i| profile_of(5, i) == Profile::HybridHealthy)
            .count() as f64;
        let share = hit.len() as f64 / healthy;
        assert!((0.08..0.12).contains(&share), "burst share {share}");
        for &i in &hit {
            let base = profile_of(5, i);
            assert_eq!(t.profile(i, base, Stage::Normal), Profile::HybridHealthy);
            assert_eq!(t.profile(i, base, Stage::Burst), Profile::DeviceNotSynced);
            assert_eq!(t.profile(i, base, Stage::Healed), Profile::HybridHealthy);
        }
        // Failing devices are never re-imaged into a different failure.
        let failing = (0..1000)
            .find(|&i| profile_of(5, i) == Profile::NoScp)
            .unwrap_or(0);
        assert!(!t.in_burst(failing, Profile::NoScp));
    }

    #[test]
    fn tenant_not_found_never_heals() {
        let t = Timeline {
            scenario: Scenario::TenantNotFound,
            seed: 5,
        };
        assert_eq!(t.stage(0.99), Stage::Burst);
        let i = (0..10_000)
            .find(|&i| t.in_burst(i, Profile::HybridHealthy))
            .unwrap_or(0);
        assert_eq!(
            t.profile(i, Profile::HybridHealthy, t.stage(0.99)),
            Profile::TenantNotFound
        );
    }

    #[test]
    fn outage_stops_sending_then_storms() {
        let t = Timeline {
            scenario: Scenario::Outage,
            seed: 1,
        };
        assert!(t.sending(t.stage(0.29)));
        assert!(!t.sending(t.stage(0.3)));
        assert!(!t.sending(t.stage(0.59)));
        assert!(t.sending(t.stage(0.6)));
        assert_eq!(t.transition(Stage::Outage, Stage::Reconnected), Some(true));
        assert_eq!(t.transition(Stage::Normal, Stage::Outage), None);
    }

    #[test]
    fn steady_has_no_burst() {
        let t = Timeline {
            scenario: Scenario::Steady,
            seed: 1,
        };
        assert!((0..1000).all(|i| !t.in_burst(i, Profile::HybridHealthy)));
        assert_eq!(t.stage(0.5), Stage::Normal);
    }
}
