//! `consign ledger verify --kafka`: verifies every chain as the events topic contains it,
//! without a local copy.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use consign_ledger::ChainChecks;
use consign_ledger::kafka::verify_topic;

use super::Outcome;
use super::ledger::{VerifyArgs, public_keys};
use crate::progress;

pub(super) fn verify(args: &VerifyArgs) -> anyhow::Result<Outcome> {
    let brokers = args.data.kafka.as_deref().unwrap_or_default();
    let topic = &args.data.kafka_topic;
    if args.from != 0 || args.to.is_some() || args.checkpoint.is_some() || args.chain.is_some() {
        anyhow::bail!(
            "--kafka verifies every chain of the topic from its start; leave out --chain, \
             --from, --to and --checkpoint, or verify a local copy with --data-dir alone"
        );
    }
    let checks = ChainChecks {
        // The topic is only read below, so a topic that may hold checkpoints needs the
        // keys or --without-signatures.
        keys: public_keys(&args.data.keys_dir()?, args.without_signatures, true)?,
        saved_checkpoint: None,
    };

    let started = Instant::now();
    let bar = progress::counter("events verified");
    let reports = verify_topic(brokers, topic, &checks, &|checked| {
        bar.set_position(checked)
    })
    .with_context(|| format!("cannot read topic {topic} at {brokers}"))?;
    bar.finish_and_clear();

    let mut stdout = super::CheckOutput::new();
    let mut total = 0;
    let mut broken = false;
    for topic_report in &reports {
        let report = &topic_report.report;
        total += report.verified;
        match &report.first_break {
            Some(found) => {
                broken = true;
                writeln!(
                    stdout,
                    "topic {topic} is BROKEN at {found}; {} events before it verified",
                    report.verified
                )?;
            }
            None => writeln!(
                stdout,
                "chain {}: {} events verified, last hash {}, partition end offset {}",
                report.chain, report.verified, report.last_hash, topic_report.end_offset
            )?,
        }
    }
    if broken {
        return Ok(Outcome::CheckFailed);
    }
    let seconds = started.elapsed().as_secs_f64();
    writeln!(
        stdout,
        "topic {topic} at {brokers} is intact: {total} events in {} chains verified in \
         {seconds:.2} s ({:.0} events/s)",
        reports.len(),
        total as f64 / seconds.max(1e-9)
    )?;
    Ok(Outcome::Success)
}
