//! Faults under load on the Kafka backend: a `consign serve` process killed with
//! SIGKILL, with fixed chains and with chains balanced by a consumer group, the broker
//! stopped and started again, and the partition leader of a three-broker cluster
//! killed. Clients keep submitting throughout. During an outage the servers return
//! 503, never 201 for a submission Kafka did not commit. Afterwards every
//! acknowledged submission is in the topic exactly once, and every chain verifies
//! with no gap, duplicate or fork.
//!
//! The tests of killed servers use the broker of `CONSIGN_KAFKA_BROKERS`. The broker
//! and leader tests start clusters of their own with `scripts/kafka/start.sh` on client
//! ports from 19500 and 19700 and break them with `scripts/kafka/node.sh`. The tests
//! run one at a time, and only where the test script started a broker (under CI a
//! missing one fails them).

mod kafka_support;

use std::time::{Duration, Instant};

use kafka_support::{
    Cluster, Load, Outcome, ServeProcess, acknowledged, check_topic, count_between, create_sender,
};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Keeps the fault tests from running at the same time: each one loads the machine's
/// two cores with brokers and servers.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn is_acknowledged(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Acknowledged(_))
}

fn is_unavailable(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Unavailable)
}

/// Starts two servers on `brokers`, each sequencing one of the two chains, and opens
/// the sender account.
async fn two_servers(
    work: &std::path::Path,
    brokers: &str,
    topic: &str,
) -> (ServeProcess, ServeProcess) {
    let client = reqwest::Client::new();
    let mut first = ServeProcess::start(&work.join("first"), brokers, topic, "0");
    let mut second = ServeProcess::start(&work.join("second"), brokers, topic, "1");
    first.wait_healthy(&client).await;
    second.wait_healthy(&client).await;
    create_sender(work, brokers, topic);
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_loses_nothing() {
    let Some(brokers) = kafka_support::kafka_brokers() else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let topic = kafka_support::unique_topic("kill");
    let work = tempfile::tempdir().unwrap();
    let (first, mut second) = two_servers(work.path(), &brokers, &topic).await;

    let load = Load::start(&[&first.base, &second.base], 2);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let killed_at = Instant::now();
    second.kill();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let restarted_at = Instant::now();
    second.restart();
    second.wait_healthy(&reqwest::Client::new()).await;
    let healthy_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let end = Instant::now();
    let records = load.finish().await;
    let (of_first, of_second) = records.split_at(2);

    let first_during = count_between(of_first, killed_at, restarted_at, is_acknowledged);
    let second_before = count_between(
        of_second,
        killed_at - Duration::from_secs(8),
        killed_at,
        is_acknowledged,
    );
    let second_after = count_between(of_second, healthy_at, end, is_acknowledged);
    eprintln!(
        "acknowledged: by the second server before the kill {second_before}, by the first \
         while the second was down {first_during}, by the second after its restart {second_after}"
    );
    assert!(
        second_before > 0,
        "the second server acknowledged nothing before the kill\n{}",
        second.log_tail(60)
    );
    assert!(
        first_during > 0,
        "the first server stopped while the second was down\n{}",
        first.log_tail(60)
    );
    assert!(
        second_after > 0,
        "the second server acknowledged nothing after its restart\n{}",
        second.log_tail(60)
    );

    drop(first);
    drop(second);
    check_topic(work.path(), &brokers, &topic, &acknowledged(&records)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_gives_503_and_loses_nothing() {
    if kafka_support::kafka_brokers().is_none() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(1, 19500);
    let topic = kafka_support::unique_topic("restart");
    let work = tempfile::tempdir().unwrap();
    let (first, second) = two_servers(work.path(), &cluster.brokers, &topic).await;

    let client = reqwest::Client::new();
    let load = Load::start(&[&first.base, &second.base], 2);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let stopped_at = Instant::now();
    cluster.node(1, "stop");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let started_at = Instant::now();
    cluster.node(1, "start");

    // Each server recovers on its own schedule: a sequencer restarts with a backoff of
    // up to 5 s, and a restart begun during the outage waits up to 30 s for the
    // coordinator. The load runs until both chains grew again, within a bound.
    let mut heads = Vec::new();
    for (server, chain) in [(&first, 0), (&second, 1)] {
        heads.push(server.next_position(&client, chain).await.unwrap_or(0));
    }
    let recovery = Duration::from_secs(90);
    first.wait_growth(&client, 0, heads[0], recovery).await;
    second.wait_growth(&client, 1, heads[1], recovery).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let end = Instant::now();
    eprintln!(
        "load ran {} s after the broker's restart",
        end.duration_since(started_at).as_secs()
    );
    let records = load.finish().await;

    let refused = count_between(&records, stopped_at, started_at, is_unavailable);
    let recovered_first = count_between(&records[..2], started_at, end, is_acknowledged);
    let recovered_second = count_between(&records[2..], started_at, end, is_acknowledged);
    eprintln!(
        "503 answers while the broker was down: {refused}; acknowledged after its restart: \
         {recovered_first} by the first server, {recovered_second} by the second"
    );
    assert!(
        refused > 0,
        "no 503 while the broker was down\n{}\n{}",
        first.log_tail(30),
        second.log_tail(30)
    );
    assert!(
        recovered_first > 0,
        "the first server did not recover\n{}",
        first.log_tail(60)
    );
    assert!(
        recovered_second > 0,
        "the second server did not recover\n{}",
        second.log_tail(60)
    );

    drop(first);
    drop(second);
    check_topic(
        work.path(),
        &cluster.brokers,
        &topic,
        &acknowledged(&records),
    )
    .await;
}

/// Returns the node id of the leader of `partition`.
fn leader_of(brokers: &str, topic: &str, partition: i32) -> i32 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .find(|candidate| candidate.id() == partition)
        .unwrap()
        .leader()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_change_in_three_brokers_loses_nothing() {
    if kafka_support::kafka_brokers().is_none() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3, 19700);
    let topic = kafka_support::unique_topic("leader");
    let work = tempfile::tempdir().unwrap();

    // A topic with one copy of each partition loses events with its broker, so a
    // server refuses it on a cluster of three.
    let single = kafka_support::unique_topic("single-copy");
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &cluster.brokers)
            .create()
            .unwrap();
    let new_topic =
        rdkafka::admin::NewTopic::new(&single, 1, rdkafka::admin::TopicReplication::Fixed(1));
    let created = admin
        .create_topics([&new_topic], &rdkafka::admin::AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let mut refused = std::process::Command::new(kafka_support::BIN);
    refused
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--kafka",
            &cluster.brokers,
        ])
        .args(["--kafka-topic", &single])
        .arg("--data-dir")
        .arg(work.path().join("single"));
    let stderr = kafka_support::refused_start(refused).await;
    assert!(stderr.contains("partition 0 has 1 replicas"), "{stderr}");
    let (first, second) = two_servers(work.path(), &cluster.brokers, &topic).await;

    let load = Load::start(&[&first.base, &second.base], 2);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let leader = leader_of(&cluster.brokers, &topic, 0);
    let killed_at = Instant::now();
    cluster.node(leader, "kill");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let new_leader = leader_of(&cluster.brokers, &topic, 0);
    let after_change = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    cluster.node(leader, "start");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let end = Instant::now();
    let records = load.finish().await;

    let refused = count_between(&records, killed_at, after_change, is_unavailable);
    let recovered = count_between(&records, after_change, end, is_acknowledged);
    eprintln!(
        "leader of partition 0 was node {leader}, then node {new_leader}; {refused} answers \
         were 503 in the 20 s after the kill, {recovered} acknowledged after the change"
    );
    assert_ne!(leader, new_leader, "the partition kept its killed leader");
    assert!(
        recovered > 0,
        "no submission acknowledged after the leader change\n{}\n{}",
        first.log_tail(60),
        second.log_tail(60)
    );
    for (worker, record) in records.iter().enumerate() {
        assert!(
            count_between([record], after_change, end, is_acknowledged) > 0,
            "client {worker} had nothing acknowledged after the leader change\n{}\n{}",
            first.log_tail(60),
            second.log_tail(60)
        );
    }

    drop(first);
    drop(second);
    check_topic(
        work.path(),
        &cluster.brokers,
        &topic,
        &acknowledged(&records),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_chains_move_to_survivor() {
    let Some(brokers) = kafka_support::kafka_brokers() else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let topic = kafka_support::unique_topic("balance");
    let work = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut first = ServeProcess::start(&work.path().join("first"), &brokers, &topic, "balance");
    let mut second = ServeProcess::start(&work.path().join("second"), &brokers, &topic, "balance");
    first.wait_healthy(&client).await;
    second.wait_healthy(&client).await;

    // The group gives each server one of the two chains.
    let spread = Duration::from_secs(60);
    let first_chains = first.wait_owned(1, spread).await;
    let second_chains = second.wait_owned(1, spread).await;
    assert_ne!(first_chains, second_chains);
    create_sender(work.path(), &brokers, &topic);

    let load = Load::start(&[&first.base, &second.base], 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let killed_at = Instant::now();
    second.kill();

    // The survivor takes the killed server's chain once its session times out.
    let after_takeover = first.wait_owned(2, spread).await;
    let took_over_at = Instant::now();
    assert!(
        after_takeover.is_superset(&second_chains),
        "{after_takeover:?}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The restarted server joins the group again and gets a chain back.
    second.restart();
    second.wait_healthy(&client).await;
    let rejoined = second.wait_owned(1, spread).await;
    let first_after_rejoin = first.wait_owned(1, spread).await;
    let rejoined_at = Instant::now();
    assert_ne!(rejoined, first_after_rejoin);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let end = Instant::now();
    let records = load.finish().await;

    let moved_in = took_over_at.duration_since(killed_at);
    let first_after = count_between(&records[..2], took_over_at, end, is_acknowledged);
    let second_after = count_between(&records[2..], rejoined_at, end, is_acknowledged);
    eprintln!(
        "chains: first {first_chains:?}, second {second_chains:?}; the first owned {after_takeover:?} \
         {} ms after the kill; after the restart the second owned {rejoined:?}; \
         acknowledged afterwards: {first_after} by the first, {second_after} by the second",
        moved_in.as_millis()
    );
    assert!(first.log_text().contains("sequencer released"));
    assert!(
        first_after > 0,
        "the first server stopped taking submissions"
    );
    assert!(second_after > 0, "the restarted server took no submission");

    drop(first);
    drop(second);
    check_topic(work.path(), &brokers, &topic, &acknowledged(&records)).await;
}
