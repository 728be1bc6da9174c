//! [`Workload`]: the pure generator that interleaves account requests, delivery plans
//! and checkpoints in simulated time.
//!
//! The generator owns the world (accounts, lists, billing codes), the plans of open
//! deliveries, a min-heap of each plan's next due time, and the count of events it
//! yielded per chain. It yields the account setup first, then always the earliest due
//! step of any plan. A new delivery is admitted when its submission time comes and
//! fewer than `open_deliveries` deliveries are open, so memory stays bounded.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use consign_schemas::{IdempotencyKey, Timestamp};

use super::catalog::{self, HOUR, MINUTE};
use super::config::{ConfigError, WorkloadConfig};
use super::delivery::{Admission, Step, plan_delivery};
use super::world::World;
use crate::AppendRequest;

/// Chance per admitted delivery that an account holder sets a new password, per mille.
const CREDENTIAL_ROTATION_PER_MILLE: u32 = 10;
/// Chance per admitted delivery that a sender edits a mailing list, per mille.
const LIST_CHANGE_PER_MILLE: u32 = 5;

/// A deterministic stream of append requests that reads like a busy consign service.
///
/// Iterating yields one [`AppendRequest`] per command: first one `AccountOpened` per
/// account and one `MailingListDefined` per list on chain 0, then deliveries and
/// account changes interleaved in simulated time. Checkpoints are left to the ledger,
/// which signs real ones when opened with a checkpoint policy. Each delivery's requests are in causal order and go
/// to [`chain_for_delivery`](super::chain_for_delivery). Submissions carry an
/// idempotency key derived from the settings, so appending the same workload twice
/// writes each submission once.
///
/// NOTE: [`StdRng`] output is not portable, so a `rand` upgrade or another platform
/// may change the requests a seed yields.
#[derive(Debug)]
pub struct Workload {
    config: WorkloadConfig,
    rng: StdRng,
    world: World,
    /// Distinguishes the idempotency keys of different settings.
    fingerprint: u32,
    /// Account and list requests not yet yielded, which come before everything else.
    setup: VecDeque<AppendRequest>,
    plans: HashMap<u64, Plan>,
    /// The next due time of every plan in `plans`, earliest first, then oldest plan first.
    due: BinaryHeap<Reverse<(Timestamp, u64)>>,
    next_plan_id: u64,
    /// Number of plans in `plans` that are deliveries.
    open_deliveries: usize,
    admitted_deliveries: u64,
    next_submission_at: Timestamp,
    /// Simulated time of the last yielded step.
    now: Timestamp,
}

/// Steps not yet yielded of one delivery or one account change.
#[derive(Debug)]
struct Plan {
    steps: VecDeque<Step>,
    is_delivery: bool,
}

impl Workload {
    /// Builds the world of accounts, lists and billing codes, and prepares the run.
    ///
    /// # Errors
    ///
    /// Returns the [`ConfigError`] of the first invalid setting.
    pub fn new(config: WorkloadConfig) -> Result<Workload, ConfigError> {
        config.validate()?;

        let mut rng = StdRng::seed_from_u64(config.seed);
        let (world, setup) = World::build(&mut rng, &config);
        let mut workload = Workload {
            fingerprint: config.fingerprint(),
            rng,
            world,
            setup: setup.into(),
            plans: HashMap::new(),
            due: BinaryHeap::new(),
            next_plan_id: 0,
            open_deliveries: 0,
            admitted_deliveries: 0,
            next_submission_at: config.start,
            now: config.start,
            config,
        };

        // Accounts are opened with a temporary password that each holder replaces at
        // first login. The first admin set its own during setup.
        for account_index in 1..workload.world.accounts.len() {
            let delay = workload.rng.random_range(5 * MINUTE..3 * HOUR);
            let at = catalog::later(workload.config.start, delay);
            let request = workload
                .world
                .change_credential(&mut workload.rng, account_index);
            workload.add_plan(vec![Step { at, request }], false);
        }
        Ok(workload)
    }

    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    /// Returns whether the next request belongs to the account setup, which the caller
    /// must append in full before any delivery refers to its accounts.
    pub fn in_setup_phase(&self) -> bool {
        !self.setup.is_empty()
    }

    /// Returns the next request, or `None` once every delivery has been admitted and
    /// every plan has yielded its last step.
    pub fn next_request(&mut self) -> Option<AppendRequest> {
        self.next_scheduled().map(|(_, request)| request)
    }

    /// Returns the next request with its simulated time, which never decreases from one
    /// request to the next. The account setup is at the configured start.
    pub fn next_scheduled(&mut self) -> Option<(Timestamp, AppendRequest)> {
        if let Some(request) = self.setup.pop_front() {
            return Some((self.now, request));
        }

        loop {
            let may_admit = self.admitted_deliveries < self.config.deliveries
                && self.open_deliveries < self.config.open_deliveries;
            let next_due = self.due.peek().map(|Reverse((at, _))| *at);
            if may_admit && next_due.is_none_or(|due| self.next_submission_at <= due) {
                self.admit_delivery();
                continue;
            }

            let Reverse((_, plan_id)) = self.due.pop()?;
            let step = self.take_step(plan_id);
            self.now = self.now.max(step.at);
            return Some((self.now, step.request));
        }
    }

    /// Plans the next delivery, and maybe an account change just before it.
    fn admit_delivery(&mut self) {
        let at = self.next_submission_at.max(self.now);
        self.maybe_change_accounts(at);

        let index = self.admitted_deliveries;
        self.admitted_deliveries += 1;
        let key = format!(
            "workload-{:016x}-{:08x}-submission-{index}",
            self.config.seed, self.fingerprint
        );
        let admission = Admission {
            submitted_at: at,
            chains: self.config.chains,
            idempotency_key: IdempotencyKey::new(key)
                .expect("a workload key is at most 66 bytes, within the 200-byte limit"),
        };
        let steps = plan_delivery(&mut self.rng, &self.world, admission);
        self.add_plan(steps, true);

        // Uniform gaps from 0 to twice the mean: an exponential draw would need floating
        // point, whose rounding can differ between platforms.
        let mean_gap =
            i64::try_from(self.config.mean_submission_gap.as_micros()).unwrap_or(i64::MAX / 4);
        let gap = self.rng.random_range(0..=2 * mean_gap);
        self.next_submission_at = catalog::later(at, gap);
    }

    /// Draws the rare password rotations and mailing-list edits, due at `at`.
    ///
    /// A list edit takes effect at once in the world, so it is planned at the same time
    /// as the delivery admitted next, under an older plan id that the heap yields first.
    fn maybe_change_accounts(&mut self, at: Timestamp) {
        if self.rng.random_ratio(CREDENTIAL_ROTATION_PER_MILLE, 1_000) {
            let account_index = self.rng.random_range(0..self.world.accounts.len());
            let request = self.world.change_credential(&mut self.rng, account_index);
            self.add_plan(vec![Step { at, request }], false);
        }
        if self.rng.random_ratio(LIST_CHANGE_PER_MILLE, 1_000)
            && let Some(request) = self.world.redefine_list(&mut self.rng)
        {
            self.add_plan(vec![Step { at, request }], false);
        }
    }

    fn add_plan(&mut self, steps: Vec<Step>, is_delivery: bool) {
        let Some(first) = steps.first() else {
            return;
        };
        let plan_id = self.next_plan_id;
        self.next_plan_id += 1;

        self.due.push(Reverse((first.at, plan_id)));
        self.plans.insert(
            plan_id,
            Plan {
                steps: steps.into(),
                is_delivery,
            },
        );
        if is_delivery {
            self.open_deliveries += 1;
        }
    }

    /// Takes the first step of a plan, and schedules the plan's next step or drops the
    /// plan when it has none.
    fn take_step(&mut self, plan_id: u64) -> Step {
        let plan = self
            .plans
            .get_mut(&plan_id)
            .expect("every plan id in the heap has a plan");
        let step = plan
            .steps
            .pop_front()
            .expect("a plan in the heap has a step left");

        if let Some(next) = plan.steps.front() {
            self.due.push(Reverse((next.at, plan_id)));
        } else {
            let finished = self.plans.remove(&plan_id);
            if finished.is_some_and(|plan| plan.is_delivery) {
                self.open_deliveries -= 1;
            }
        }
        step
    }
}

impl Iterator for Workload {
    type Item = AppendRequest;

    fn next(&mut self) -> Option<AppendRequest> {
        self.next_request()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use consign_schemas::events::{DenialReason, NotificationKind, Priority};
    use consign_schemas::{ChainId, DeliveryId, Event, EventKind};

    use super::*;
    use crate::workload::causality::check_causal_order;
    use crate::workload::chain_for_delivery;

    fn run(config: WorkloadConfig) -> Vec<AppendRequest> {
        Workload::new(config)
            .expect("test configs are valid")
            .collect()
    }

    fn config(deliveries: u64, seed: u64) -> WorkloadConfig {
        WorkloadConfig {
            deliveries,
            seed,
            ..WorkloadConfig::default()
        }
    }

    fn events(requests: &[AppendRequest]) -> impl Iterator<Item = &Event> {
        requests
            .iter()
            .flat_map(|r| r.events.iter().map(|e| &e.event))
    }

    fn delivery_of(request: &AppendRequest) -> Option<DeliveryId> {
        request.events.iter().find_map(|e| e.event.delivery())
    }

    fn count_kinds(requests: &[AppendRequest]) -> BTreeMap<EventKind, u64> {
        let mut counts = BTreeMap::new();
        for event in events(requests) {
            *counts.entry(event.kind()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn same_seed_yields_same_requests() {
        let first = run(config(300, 42));
        let second = run(config(300, 42));

        assert_eq!(first.len(), second.len());
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.chain, b.chain);
            assert_eq!(a.command, b.command);
            assert_eq!(a.idempotency_key, b.idempotency_key);
            assert_eq!(a.events, b.events);
        }
    }

    #[test]
    fn other_seed_yields_other_requests() {
        let first = run(config(50, 1));
        let second = run(config(50, 2));

        assert_ne!(first[0].command, second[0].command);
        assert_ne!(first[0].events, second[0].events);
    }

    #[test]
    fn every_event_kind_appears_in_500_deliveries() {
        for seed in 0..4 {
            let counts = count_kinds(&run(config(500, seed)));
            // Checkpoints come from the ledger's writer, not from the workload.
            for kind in EventKind::ALL
                .into_iter()
                .filter(|kind| *kind != EventKind::CheckpointSigned)
            {
                assert!(
                    counts.contains_key(&kind),
                    "seed {seed}: no {} in 500 deliveries",
                    kind.name()
                );
            }
        }
    }

    #[test]
    fn requests_follow_causal_order() {
        let configs = [
            config(500, 0),
            config(500, 7),
            WorkloadConfig {
                deliveries: 300,
                seed: 3,
                chains: 4,
                open_deliveries: 5,
                ..WorkloadConfig::default()
            },
        ];
        for config in configs {
            let seed = config.seed;
            let requests = run(config);
            if let Err(violation) = check_causal_order(&requests) {
                panic!("seed {seed}: {violation}");
            }
        }
    }

    #[test]
    fn delivery_requests_go_to_mapped_chain() {
        let requests = run(WorkloadConfig {
            chains: 5,
            ..config(300, 5)
        });
        let mut chains_used = HashSet::new();

        for request in &requests {
            let first = &request.events[0].event;
            match (delivery_of(request), first) {
                (Some(delivery), _) => {
                    assert_eq!(request.chain, chain_for_delivery(delivery, 5));
                    chains_used.insert(request.chain);
                }
                (None, _) => assert_eq!(request.chain, ChainId::new(0), "{first:?}"),
            }
        }
        assert_eq!(chains_used.len(), 5);
    }

    #[test]
    fn setup_comes_first_and_is_reported() {
        let mut workload = Workload::new(config(10, 0)).unwrap();
        let mut setup_kinds = Vec::new();
        while workload.in_setup_phase() {
            setup_kinds.push(workload.next_request().unwrap().events[0].event.kind());
        }

        assert_eq!(setup_kinds.len(), 12);
        assert_eq!(setup_kinds[0], EventKind::AccountOpened);
        assert_eq!(setup_kinds[11], EventKind::MailingListDefined);
        assert!(workload.next_request().is_some());
        assert!(!workload.in_setup_phase());
    }

    #[test]
    fn submission_keys_are_unique_and_stable() {
        let keys = |config| -> Vec<IdempotencyKey> {
            run(config)
                .into_iter()
                .filter_map(|request| request.idempotency_key)
                .collect()
        };
        let first = keys(config(200, 11));
        let unique: HashSet<&IdempotencyKey> = first.iter().collect();

        assert_eq!(first.len(), 200);
        assert_eq!(unique.len(), 200);
        assert_eq!(first, keys(config(200, 11)));
        assert!(
            keys(config(200, 12))
                .iter()
                .all(|key| !unique.contains(key))
        );
    }

    #[test]
    fn longer_run_starts_with_same_submissions() {
        let submissions = |deliveries| -> Vec<Event> {
            events(&run(config(deliveries, 8)))
                .filter(|event| event.kind() == EventKind::DeliverySubmitted)
                .cloned()
                .collect()
        };
        let short = submissions(60);
        let long = submissions(120);

        assert_eq!(short.len(), 60);
        assert_eq!(short[..], long[..60]);
    }

    #[test]
    fn deliveries_interleave() {
        let requests = run(config(300, 4));
        let mut spans: HashMap<DeliveryId, (usize, usize, usize)> = HashMap::new();
        for (index, request) in requests.iter().enumerate() {
            if let Some(delivery) = delivery_of(request) {
                let span = spans.entry(delivery).or_insert((index, index, 0));
                span.1 = index;
                span.2 += 1;
            }
        }
        // A delivery interleaves when its span contains requests of others.
        let long: Vec<_> = spans.values().filter(|span| span.2 >= 3).collect();
        let interleaved = long
            .iter()
            .filter(|span| span.1 - span.0 + 1 > span.2)
            .count();

        assert!(
            long.len() > 200,
            "{} deliveries with 3 or more requests",
            long.len()
        );
        assert!(
            interleaved * 10 >= long.len() * 9,
            "{interleaved} of {}",
            long.len()
        );
    }

    #[test]
    fn one_open_delivery_keeps_deliveries_apart() {
        let requests = run(WorkloadConfig {
            open_deliveries: 1,
            ..config(100, 6)
        });
        let order: Vec<DeliveryId> = requests.iter().filter_map(delivery_of).collect();
        let mut finished = HashSet::new();

        for pair in order.windows(2) {
            if pair[0] != pair[1] {
                assert!(finished.insert(pair[0]), "delivery {} resumed", pair[0]);
            }
            assert!(!finished.contains(&pair[1]), "delivery {} resumed", pair[1]);
        }
    }

    #[test]
    fn options_and_texts_vary() {
        let requests = run(config(500, 10));
        let mut priorities = HashSet::new();
        let mut zones = HashSet::new();
        let mut billing_codes = HashSet::new();
        let mut flags = [0u32; 7];
        let mut via_list = 0;
        let mut scripts = HashSet::new();
        let mut denials = HashSet::new();
        let mut receipt_attempts = 0;
        for event in events(&requests) {
            match event {
                Event::DeliverySubmitted(submitted) => {
                    let options = &submitted.options;
                    priorities.insert(options.priority);
                    for zoned in [&options.expires_at, &options.deliver_at]
                        .into_iter()
                        .flatten()
                    {
                        zones.insert(zoned.zone.clone());
                    }
                    billing_codes.extend(options.billing_code.clone());
                    if let Some(hash) = &options.access_password_hash {
                        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
                    }
                    let set = [
                        options.encrypt_at_rest,
                        options.receipt_requested,
                        options.expires_at.is_some(),
                        options.deliver_at.is_some(),
                        options.access_password_hash.is_some(),
                        options.require_tls,
                        options.postmark,
                    ];
                    for (flag, on) in flags.iter_mut().zip(set) {
                        *flag += u32::from(on);
                    }
                    for recipient in &submitted.recipients {
                        via_list += u32::from(recipient.via_list.is_some());
                        let name = recipient.mailbox.display_name.as_deref().unwrap_or("");
                        scripts.extend(name.chars().filter(|c| !c.is_ascii()).map(script_of));
                    }
                }
                Event::DocumentUploaded(upload) => {
                    scripts.extend(
                        upload
                            .file_name
                            .chars()
                            .filter(|c| !c.is_ascii())
                            .map(script_of),
                    );
                }
                Event::AccessDenied(denied) => {
                    denials.insert(denied.reason);
                }
                Event::NotificationAttempted(attempted) => {
                    receipt_attempts += u32::from(attempted.kind == NotificationKind::Receipt);
                }
                _ => {}
            }
        }

        assert_eq!(
            priorities,
            HashSet::from([Priority::Normal, Priority::High, Priority::Urgent])
        );
        assert!(zones.len() >= 5, "{zones:?}");
        assert!(billing_codes.len() >= 10, "{billing_codes:?}");
        for (index, count) in flags.iter().enumerate() {
            assert!(
                (10..490).contains(count),
                "option {index} set on {count} of 500"
            );
        }
        assert!(via_list > 0);
        assert!(scripts.len() >= 8, "{scripts:?}");
        for reason in [
            DenialReason::WrongPassword,
            DenialReason::Throttled,
            DenialReason::Expired,
            DenialReason::Withdrawn,
        ] {
            assert!(denials.contains(&reason), "no {reason:?} in {denials:?}");
        }
        assert!(receipt_attempts > 0);
    }

    /// Names the Unicode block group of a character, enough to count scripts.
    fn script_of(c: char) -> &'static str {
        match c as u32 {
            0x0080..=0x024f | 0x1e00..=0x1eff => "Latin",
            0x0370..=0x03ff => "Greek",
            0x0400..=0x04ff => "Cyrillic",
            0x0590..=0x05ff => "Hebrew",
            0x0600..=0x06ff => "Arabic",
            0x0900..=0x097f => "Devanagari",
            0x0e00..=0x0e7f => "Thai",
            0x3040..=0x30ff => "Kana",
            0x4e00..=0x9fff => "Han",
            0xac00..=0xd7af => "Hangul",
            _ => "other",
        }
    }

    #[test]
    fn event_mix_matches_documented_rates() {
        let requests = run(config(1_000, 12));
        let counts = count_kinds(&requests);
        let count = |kind| counts.get(&kind).copied().unwrap_or(0);
        // Shown with `--nocapture`, for tuning the rates in the delivery planner.
        for (kind, n) in &counts {
            eprintln!("{:>22} {n:>6}", kind.name());
        }
        eprintln!("{:>22} {:>6}", "requests", requests.len());

        assert_eq!(count(EventKind::DeliverySubmitted), 1_000);
        assert!((200..400).contains(&count(EventKind::PostmarkIssued)));
        assert!((20..90).contains(&count(EventKind::DeliveryWithdrawn)));
        assert!((400..650).contains(&count(EventKind::DeliveryExpired)));
        // Every withdrawn or expired delivery is purged, and a few more by retention.
        let ended = count(EventKind::DeliveryWithdrawn) + count(EventKind::DeliveryExpired);
        assert!(count(EventKind::DocumentsPurged) >= ended);
        // Every attempt has exactly one outcome: deferred, or a final one.
        let outcomes = count(EventKind::NotificationSent)
            + count(EventKind::NotificationFailed)
            + count(EventKind::ReceiptSent)
            + count(EventKind::NotificationDeferred);
        assert_eq!(count(EventKind::NotificationAttempted), outcomes);
        assert!(count(EventKind::NotificationFailed) * 10 < count(EventKind::NotificationSent));
    }

    #[test]
    fn invalid_config_is_rejected() {
        let result = Workload::new(WorkloadConfig {
            chains: 0,
            ..WorkloadConfig::default()
        });

        assert!(matches!(result, Err(ConfigError::NoChains)));
    }
}
