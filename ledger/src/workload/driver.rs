//! The async driver that appends a [`Workload`] to a ledger with several requests in
//! flight, and the [`Appender`] trait it appends through.
//!
//! The driver owns the in-flight appends, the set of busy [`Lane`]s and the requests
//! waiting for their lane to become free. Two requests of one lane are never in
//! flight together, so each lane's requests reach the ledger in the order the
//! workload yielded them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use consign_schemas::{AccountId, ChainId, CommandId, DeliveryId, Event, Timestamp};

use super::config::{ConfigError, WorkloadConfig};
use super::generator::Workload;
use crate::{AppendRequest, Appended, EmbeddedLedger, LedgerError, ManualClock};

/// Waiting requests allowed per unit of concurrency. When this many wait for busy
/// lanes, the driver stops reading ahead until a lane becomes free.
const WAITING_PER_SLOT: usize = 4;

/// A request with its simulated time.
type Scheduled = (Timestamp, AppendRequest);

/// A ledger that the driver can append to.
pub trait Appender {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Appends the request's events atomically to its chain, as
    /// `EmbeddedLedger::append` does. `at` is the simulated time at which the workload
    /// makes the request, which [`AtSimulatedTime`] uses as the sequencer time.
    fn append(
        &self,
        request: AppendRequest,
        at: Timestamp,
    ) -> impl Future<Output = Result<Appended, Self::Error>> + Send;

    /// Returns the most simulated time by which a request may come after the earliest
    /// request not yet acknowledged, for an appender that sequences at simulated times.
    /// The default, `None`, sets no bound.
    fn time_window(&self) -> Option<Duration> {
        None
    }
}

/// Appends to an embedded ledger whose sequencer reads `clock`, moving the clock
/// forward to each request's simulated time first. The events' times then agree with
/// the times in their payloads: an expiry is recorded at or after the expiration date
/// it carries, and the history spreads over the simulated weeks instead of the minutes
/// the run takes.
///
/// Requests in flight together share one clock, which never goes back, so an event may
/// be sequenced later than its simulated time. The driver bounds that by starting no
/// request more than [`SIMULATED_TIME_WINDOW`] after the earliest one not yet
/// acknowledged.
#[derive(Debug)]
pub struct AtSimulatedTime<'a> {
    pub ledger: &'a EmbeddedLedger,
    pub clock: &'a ManualClock,
}

impl Appender for AtSimulatedTime<'_> {
    type Error = LedgerError;

    async fn append(&self, request: AppendRequest, at: Timestamp) -> Result<Appended, LedgerError> {
        self.clock.advance_to(at);
        self.ledger.append(request).await
    }

    fn time_window(&self) -> Option<Duration> {
        Some(SIMULATED_TIME_WINDOW)
    }
}

/// Most simulated time by which [`AtSimulatedTime`] sequences an event after its own
/// time.
pub const SIMULATED_TIME_WINDOW: Duration = Duration::from_secs(60);

/// The unit of causal order: requests of one lane must be appended one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Every request about one delivery, its uploads included.
    Delivery(DeliveryId),
    /// Account requests without a delivery: opening, credentials, mailing lists.
    Account(AccountId),
    /// Requests with neither, such as checkpoints.
    Chain(ChainId),
}

impl Lane {
    /// Returns the lane of a request: its delivery if an event has one, else the
    /// account an event names, else its chain.
    pub fn of(request: &AppendRequest) -> Lane {
        let events = || request.events.iter().map(|new_event| &new_event.event);
        if let Some(delivery) = events().find_map(Event::delivery) {
            return Lane::Delivery(delivery);
        }
        if let Some(account) = events().find_map(account_of) {
            return Lane::Account(account);
        }
        Lane::Chain(request.chain)
    }
}

fn account_of(event: &Event) -> Option<AccountId> {
    match event {
        Event::AccountOpened(opened) => Some(opened.account),
        Event::CredentialChanged(changed) => Some(changed.account),
        Event::MailingListDefined(defined) => Some(defined.account),
        Event::DocumentUploaded(upload) => Some(upload.account),
        _ => None,
    }
}

/// Counts of what a run appended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadSummary {
    /// Requests the ledger acknowledged, replayed ones included.
    pub requests: u64,
    /// Events written. A replayed request writes none.
    pub events: u64,
    /// Requests whose idempotency key was already in the ledger.
    pub replayed_requests: u64,
}

/// A failed workload run.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error(
        "append of command {command} to chain {chain} failed after {} acknowledged requests",
        .acknowledged.requests
    )]
    Append {
        chain: ChainId,
        command: CommandId,
        /// Requests and events acknowledged before the run stopped, including the
        /// appends in flight at the failure.
        acknowledged: WorkloadSummary,
        #[source]
        source: E,
    },
}

/// Appends the workload of `config` to `ledger`, keeping up to `concurrency` requests
/// in flight (0 counts as 1), and returns what was appended.
///
/// The account setup is appended first, and completely, before any delivery request.
/// After that, requests of different lanes interleave, while the requests of one lane
/// are appended strictly one after another in workload order. An appender with a
/// [`Appender::time_window`] gets no request that much later than the earliest one not
/// yet acknowledged. `progress` is called after each acknowledged request with the
/// number of events written so far.
///
/// Submissions carry idempotency keys, so rerunning the same configuration against
/// the same ledger writes no submission twice. Their later events have no key and are
/// written again.
///
/// # Errors
///
/// [`GenerateError::Config`] for invalid settings, before anything is appended.
/// [`GenerateError::Append`] for the first failed append. The driver then starts no
/// new request, waits for the requests in flight and returns the error.
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future drops the appends in flight, and whether
/// their events were written is then up to the ledger.
pub async fn generate<A: Appender>(
    ledger: &A,
    config: WorkloadConfig,
    concurrency: usize,
    progress: impl Fn(u64),
) -> Result<WorkloadSummary, GenerateError<A::Error>> {
    let mut workload = Workload::new(config)?;
    let concurrency = concurrency.max(1);
    let max_waiting = concurrency * WAITING_PER_SLOT;

    let mut in_flight = FuturesUnordered::new();
    let mut busy: HashSet<Lane> = HashSet::new();
    // Each waiting request and its simulated time, with whether it belongs to the
    // account setup.
    let mut waiting: HashMap<Lane, VecDeque<(Scheduled, bool)>> = HashMap::new();
    let mut waiting_count = 0;
    let mut setup_in_flight = 0;
    let mut summary = WorkloadSummary::default();
    let mut failure = None;
    let mut later_failures = 0u64;
    // The simulated times of the requests read and not yet acknowledged, with their
    // counts, and a request held back because it is too far past the earliest of them.
    let window = ledger.time_window().map(|window| {
        i64::try_from(window.as_micros()).expect("a time window fits in i64 microseconds")
    });
    let mut outstanding: BTreeMap<Timestamp, usize> = BTreeMap::new();
    let mut held_back: Option<(Scheduled, bool)> = None;

    let start = |(at, request): Scheduled, lane: Lane, is_setup: bool| {
        let chain = request.chain;
        let command = request.command;
        async move {
            let result = ledger.append(request, at).await;
            (lane, is_setup, at, chain, command, result)
        }
    };

    loop {
        // Read ahead while there is room. A request whose lane is busy waits for it.
        while failure.is_none() && in_flight.len() < concurrency && waiting_count < max_waiting {
            let (request, is_setup) = match held_back.take() {
                Some(request) => request,
                None => {
                    let is_setup = workload.in_setup_phase();
                    if !is_setup && setup_in_flight > 0 {
                        break;
                    }
                    let Some(request) = workload.next_scheduled() else {
                        break;
                    };
                    (request, is_setup)
                }
            };
            if let (Some(window), Some((earliest, _))) = (window, outstanding.first_key_value())
                && request.0.as_micros() > earliest.as_micros().saturating_add(window)
            {
                held_back = Some((request, is_setup));
                break;
            }
            *outstanding.entry(request.0).or_default() += 1;

            let lane = Lane::of(&request.1);
            if busy.insert(lane) {
                setup_in_flight += usize::from(is_setup);
                in_flight.push(start(request, lane, is_setup));
            } else {
                waiting
                    .entry(lane)
                    .or_default()
                    .push_back((request, is_setup));
                waiting_count += 1;
            }
        }

        let Some((lane, was_setup, at, chain, command, result)) = in_flight.next().await else {
            break;
        };
        busy.remove(&lane);
        setup_in_flight -= usize::from(was_setup);
        if let Some(count) = outstanding.get_mut(&at) {
            *count -= 1;
            if *count == 0 {
                outstanding.remove(&at);
            }
        }

        match result {
            Ok(appended) => {
                summary.requests += 1;
                if appended.replayed {
                    summary.replayed_requests += 1;
                } else {
                    summary.events += appended.events.len() as u64;
                }
                progress(summary.events);
            }
            Err(source) if failure.is_none() => failure = Some((chain, command, source)),
            Err(source) => {
                // Only the first failure is returned; the later ones, usually the same
                // cause hitting every append in flight, are counted and logged at debug.
                later_failures += 1;
                tracing::debug!(
                    ledger.chain = chain.get(),
                    command.id = %command,
                    error = %source,
                    "workload append failed after an earlier failure"
                );
            }
        }

        // The lane is free: its oldest waiting request goes next.
        if failure.is_none()
            && let Some(queue) = waiting.get_mut(&lane)
            && let Some((request, is_setup)) = queue.pop_front()
        {
            if queue.is_empty() {
                waiting.remove(&lane);
            }
            waiting_count -= 1;
            busy.insert(lane);
            setup_in_flight += usize::from(is_setup);
            in_flight.push(start(request, lane, is_setup));
        }
    }

    if later_failures > 0 {
        tracing::warn!(
            later_failures,
            "further appends in flight failed after the first failure"
        );
    }
    match failure {
        None => Ok(summary),
        Some((chain, command, source)) => Err(GenerateError::Append {
            chain,
            command,
            acknowledged: summary,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use consign_schemas::{EventKind, Hash32, IdempotencyKey, Position};

    use super::*;
    use crate::AppendedEvent;
    use crate::workload::causality::check_causal_order;

    /// An in-memory ledger that records appends in completion order and counts
    /// overlapping requests of one lane.
    #[derive(Default)]
    struct MemoryLedger {
        state: Mutex<MemoryState>,
        /// Fails the append with this 0-based index.
        fail_at: Option<u64>,
        /// Returned by [`Appender::time_window`].
        window: Option<Duration>,
    }

    #[derive(Default)]
    struct MemoryState {
        appended: Vec<AppendRequest>,
        chain_lengths: HashMap<ChainId, u64>,
        keys: HashMap<IdempotencyKey, Appended>,
        lanes_in_flight: HashSet<Lane>,
        lane_overlaps: u32,
        in_flight: usize,
        max_in_flight: usize,
        calls: u64,
        /// Simulated times of the appends in flight, with their counts.
        times_in_flight: BTreeMap<Timestamp, usize>,
        /// Largest lead, in microseconds, of a starting append's time over the earliest
        /// time in flight.
        max_lead: i64,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("injected failure")]
    struct InjectedFailure;

    impl Appender for MemoryLedger {
        type Error = InjectedFailure;

        async fn append(
            &self,
            request: AppendRequest,
            at: Timestamp,
        ) -> Result<Appended, InjectedFailure> {
            let lane = Lane::of(&request);
            let call = {
                let mut state = self.state.lock().unwrap();
                if !state.lanes_in_flight.insert(lane) {
                    state.lane_overlaps += 1;
                }
                *state.times_in_flight.entry(at).or_default() += 1;
                let earliest = *state.times_in_flight.keys().next().expect("just added");
                state.max_lead = state.max_lead.max(at.as_micros() - earliest.as_micros());
                state.in_flight += 1;
                state.max_in_flight = state.max_in_flight.max(state.in_flight);
                state.calls += 1;
                state.calls - 1
            };

            // Vary completion order: requests finish after 0 to 7 scheduler turns.
            for _ in 0..request.command.as_bytes()[15] % 8 {
                tokio::task::yield_now().await;
            }

            let mut state = self.state.lock().unwrap();
            state.lanes_in_flight.remove(&lane);
            state.in_flight -= 1;
            let count = state
                .times_in_flight
                .get_mut(&at)
                .expect("added at the start");
            *count -= 1;
            if *count == 0 {
                state.times_in_flight.remove(&at);
            }
            if self.fail_at == Some(call) {
                return Err(InjectedFailure);
            }
            if let Some(key) = &request.idempotency_key
                && let Some(original) = state.keys.get(key)
            {
                return Ok(Appended {
                    replayed: true,
                    ..original.clone()
                });
            }

            let length = state.chain_lengths.entry(request.chain).or_default();
            let mut events = Vec::new();
            for _ in &request.events {
                events.push(AppendedEvent {
                    position: Position::new(*length),
                    hash: Hash32::from_bytes([0; 32]),
                });
                *length += 1;
            }
            let appended = Appended {
                chain: request.chain,
                events,
                replayed: false,
            };
            if let Some(key) = &request.idempotency_key {
                state.keys.insert(key.clone(), appended.clone());
            }
            state.appended.push(request);
            Ok(appended)
        }

        fn time_window(&self) -> Option<Duration> {
            self.window
        }
    }

    fn config(deliveries: u64) -> WorkloadConfig {
        WorkloadConfig {
            deliveries,
            seed: 21,
            chains: 3,
            ..WorkloadConfig::default()
        }
    }

    #[tokio::test]
    async fn generate_appends_whole_workload_in_causal_order() {
        let ledger = MemoryLedger::default();
        let expected: Vec<AppendRequest> = Workload::new(config(300)).unwrap().collect();
        let expected_events: usize = expected.iter().map(|r| r.events.len()).sum();
        let last_progress = Mutex::new(0);

        let summary = generate(&ledger, config(300), 16, |events| {
            *last_progress.lock().unwrap() = events;
        })
        .await
        .unwrap();

        let state = ledger.state.lock().unwrap();
        assert_eq!(summary.requests, expected.len() as u64);
        assert_eq!(summary.events, expected_events as u64);
        assert_eq!(summary.replayed_requests, 0);
        assert_eq!(*last_progress.lock().unwrap(), summary.events);
        assert_eq!(state.lane_overlaps, 0);
        assert!(
            state.max_in_flight > 8,
            "max in flight {}",
            state.max_in_flight
        );
        assert!(
            state.max_in_flight <= 16,
            "max in flight {}",
            state.max_in_flight
        );
        assert_eq!(check_causal_order(&state.appended), Ok(()));
    }

    /// With a time window, no append starts more than the window after the earliest
    /// append in flight. Without one, the same run spreads further, so the bound is the
    /// window's doing.
    #[tokio::test]
    async fn time_window_bounds_the_spread_in_flight() {
        let window = Duration::from_secs(60);
        let window_micros = i64::try_from(window.as_micros()).unwrap();

        let bounded = MemoryLedger {
            window: Some(window),
            ..MemoryLedger::default()
        };
        generate(&bounded, config(300), 64, |_| {}).await.unwrap();
        let bounded_lead = bounded.state.lock().unwrap().max_lead;
        assert!(
            bounded_lead <= window_micros,
            "an append started {bounded_lead} µs after the earliest in flight"
        );

        let unbounded = MemoryLedger::default();
        generate(&unbounded, config(300), 64, |_| {}).await.unwrap();
        let unbounded_lead = unbounded.state.lock().unwrap().max_lead;
        assert!(
            unbounded_lead > window_micros,
            "without a window the lead was only {unbounded_lead} µs"
        );
    }

    #[tokio::test]
    async fn generate_appends_setup_before_deliveries() {
        let ledger = MemoryLedger::default();
        // More lists than senders: some list requests wait behind their owner's opening.
        let config = WorkloadConfig {
            mailing_lists: 12,
            ..config(50)
        };
        generate(&ledger, config, 32, |_| {}).await.unwrap();

        let state = ledger.state.lock().unwrap();
        let first_delivery = state
            .appended
            .iter()
            .position(|r| matches!(Lane::of(r), Lane::Delivery(_)))
            .unwrap();
        let setup_kinds: HashSet<EventKind> = state.appended[..first_delivery]
            .iter()
            .map(|r| r.events[0].event.kind())
            .collect();

        assert!(
            first_delivery >= 20,
            "first delivery request at {first_delivery}"
        );
        assert!(setup_kinds.contains(&EventKind::AccountOpened));
        assert!(setup_kinds.contains(&EventKind::MailingListDefined));
    }

    #[tokio::test]
    async fn generate_rerun_replays_submissions() {
        let ledger = MemoryLedger::default();
        let first = generate(&ledger, config(100), 8, |_| {}).await.unwrap();
        let second = generate(&ledger, config(100), 8, |_| {}).await.unwrap();

        assert_eq!(first.replayed_requests, 0);
        assert_eq!(second.replayed_requests, 100);
        assert_eq!(second.requests, first.requests);
        assert!(second.events < first.events);
    }

    #[tokio::test]
    async fn generate_with_concurrency_one_keeps_workload_order() {
        let ledger = MemoryLedger::default();
        let expected: Vec<AppendRequest> = Workload::new(config(40)).unwrap().collect();

        generate(&ledger, config(40), 0, |_| {}).await.unwrap();

        let state = ledger.state.lock().unwrap();
        let commands: Vec<CommandId> = state.appended.iter().map(|r| r.command).collect();
        let expected_commands: Vec<CommandId> = expected.iter().map(|r| r.command).collect();
        assert_eq!(state.max_in_flight, 1);
        assert_eq!(commands, expected_commands);
    }

    #[tokio::test]
    async fn generate_stops_at_first_failure() {
        let ledger = MemoryLedger {
            fail_at: Some(40),
            ..MemoryLedger::default()
        };

        let error = generate(&ledger, config(200), 8, |_| {}).await.unwrap_err();

        let state = ledger.state.lock().unwrap();
        let GenerateError::Append { acknowledged, .. } = &error else {
            panic!("expected an append error, got {error}");
        };
        assert_eq!(acknowledged.requests, state.appended.len() as u64);
        // Only the requests already in flight complete after the failure.
        assert!(state.calls <= 41 + 8, "{} calls", state.calls);
        assert!(
            error.to_string().starts_with("append of command"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn generate_rejects_invalid_config() {
        let ledger = MemoryLedger::default();
        let config = WorkloadConfig {
            accounts: 2,
            ..WorkloadConfig::default()
        };

        let error = generate(&ledger, config, 4, |_| {}).await.unwrap_err();

        assert!(matches!(
            error,
            GenerateError::Config(ConfigError::TooFewAccounts { accounts: 2 })
        ));
        assert_eq!(ledger.state.lock().unwrap().calls, 0);
    }

    #[test]
    fn lane_of_submission_is_its_delivery() {
        let mut workload = Workload::new(config(5)).unwrap();
        let submission = workload
            .find(|r| r.idempotency_key.is_some())
            .expect("the workload submits deliveries");
        let delivery = submission
            .events
            .iter()
            .find_map(|e| e.event.delivery())
            .unwrap();

        // The uploads come first and name no delivery, yet the lane is the delivery's.
        assert_eq!(submission.events[0].event.delivery(), None);
        assert_eq!(Lane::of(&submission), Lane::Delivery(delivery));
    }
}
