//! Temporary.
use consign_ledger::workload::{Workload, WorkloadConfig};
use consign_schemas::EventKind;
use std::collections::BTreeSet;

#[test]
fn seeds() {
    for (deliveries, chains) in [(200u64, 1u32), (500, 4)] {
        for seed in 0..12u64 {
            let config = WorkloadConfig { deliveries, chains, seed, billing_codes: 24, checkpoint_interval: 500, ..WorkloadConfig::default() };
            let mut kinds = BTreeSet::new();
            let mut requests = 0; let mut events = 0; let mut bytes = 0usize;
            for r in Workload::new(config).unwrap() {
                requests += 1;
                for e in &r.events { kinds.insert(e.event.kind()); events += 1; bytes += postcard::to_stdvec(&e.event).unwrap().len() + 120; }
            }
            let missing: Vec<_> = EventKind::ALL.iter().filter(|k| !kinds.contains(k)).map(|k| k.name()).collect();
            println!("{deliveries}/{chains} seed {seed}: {requests} requests {events} events ~{bytes} bytes missing {missing:?}");
        }
    }
}
