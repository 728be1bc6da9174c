//! The settings of a workload and their validation.

use std::time::Duration;

use consign_schemas::Timestamp;

/// Settings of one generated workload.
///
/// Two workloads with equal settings yield equal requests. The idempotency keys of
/// submissions depend on every field except `deliveries`, so a rerun with the same
/// settings writes no submission twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Number of deliveries to submit.
    pub deliveries: u64,
    /// Seed of the random generator.
    pub seed: u64,
    /// Number of chains that deliveries spread over. Account events always go to chain 0.
    pub chains: u32,
    /// Number of accounts, at least 4: one admin, one billing, one auditor and the rest
    /// senders.
    pub accounts: u32,
    /// Number of billing codes that senders choose from. With 0, no delivery has one.
    pub billing_codes: u32,
    /// Number of mailing lists, owned by the senders in turn.
    pub mailing_lists: u32,
    /// Maximum number of deliveries with requests still to come. It bounds memory and
    /// sets how widely requests of different deliveries interleave.
    pub open_deliveries: usize,
    /// Simulated time of the first request.
    pub start: Timestamp,
    /// Mean simulated time between two submissions.
    pub mean_submission_gap: Duration,
}

/// 2026-03-02T08:00:00Z, a Monday morning.
const DEFAULT_START: Timestamp = Timestamp::from_micros(1_772_438_400_000_000);

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            deliveries: 1_000,
            seed: 0,
            chains: 1,
            accounts: 8,
            billing_codes: 12,
            mailing_lists: 4,
            open_deliveries: 1_000,
            start: DEFAULT_START,
            mean_submission_gap: Duration::from_secs(20),
        }
    }
}

impl WorkloadConfig {
    /// Checks the settings that the generator cannot work without.
    ///
    /// # Errors
    ///
    /// Returns the first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.chains == 0 {
            return Err(ConfigError::NoChains);
        }
        if self.accounts < 4 {
            return Err(ConfigError::TooFewAccounts {
                accounts: self.accounts,
            });
        }
        if self.open_deliveries == 0 {
            return Err(ConfigError::NoOpenDeliveries);
        }
        Ok(())
    }

    /// Computes the value that distinguishes the submission keys of different settings.
    ///
    /// `deliveries` is left out: the first deliveries of a longer run are the deliveries
    /// of a shorter run with otherwise equal settings, so their keys match too.
    pub(super) fn fingerprint(&self) -> u32 {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.seed.to_le_bytes());
        hasher.update(&self.chains.to_le_bytes());
        hasher.update(&self.accounts.to_le_bytes());
        hasher.update(&self.billing_codes.to_le_bytes());
        hasher.update(&self.mailing_lists.to_le_bytes());
        hasher.update(&(self.open_deliveries as u64).to_le_bytes());
        hasher.update(&self.start.as_micros().to_le_bytes());
        hasher.update(&self.mean_submission_gap.as_micros().to_le_bytes());

        let digest = hasher.finalize();
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&digest.as_bytes()[..4]);
        u32::from_be_bytes(prefix)
    }
}

/// A workload setting the generator cannot work with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("chains is 0: a workload needs at least 1 chain")]
    NoChains,

    #[error(
        "accounts is {accounts}: a workload needs at least 4 (admin, billing, auditor and \
         one sender)"
    )]
    TooFewAccounts { accounts: u32 },

    #[error("open_deliveries is 0: set it to at least 1")]
    NoOpenDeliveries,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(WorkloadConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_each_invalid_field() {
        let no_chains = WorkloadConfig {
            chains: 0,
            ..WorkloadConfig::default()
        };
        let three_accounts = WorkloadConfig {
            accounts: 3,
            ..WorkloadConfig::default()
        };
        let no_open_deliveries = WorkloadConfig {
            open_deliveries: 0,
            ..WorkloadConfig::default()
        };

        assert_eq!(no_chains.validate(), Err(ConfigError::NoChains));
        assert_eq!(
            three_accounts.validate(),
            Err(ConfigError::TooFewAccounts { accounts: 3 })
        );
        assert_eq!(
            no_open_deliveries.validate(),
            Err(ConfigError::NoOpenDeliveries)
        );
    }

    #[test]
    fn fingerprint_ignores_delivery_count_only() {
        let base = WorkloadConfig::default();
        let longer = WorkloadConfig {
            deliveries: 5_000,
            ..base.clone()
        };
        let other_seed = WorkloadConfig {
            seed: 1,
            ..base.clone()
        };
        let more_chains = WorkloadConfig {
            chains: 4,
            ..base.clone()
        };

        assert_eq!(base.fingerprint(), longer.fingerprint());
        assert_ne!(base.fingerprint(), other_seed.fingerprint());
        assert_ne!(base.fingerprint(), more_chains.fingerprint());
    }
}
