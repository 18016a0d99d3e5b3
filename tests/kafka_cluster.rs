//! binlake on a 3-broker Apache Kafka cluster (KRaft, each node broker and controller), its
//! topics with replication factor 3 and `min.insync.replicas=2`, `acks=all`: while `run` and
//! two `sink`s (one consumer group) work under a random writer, the leader of the busiest
//! partitions is killed with SIGKILL and restarted, then every broker is restarted in turn.
//! Nothing is lost, nothing applied twice after the position filter, no binlake process
//! exits, and the lake and a rebuild equal the source. The sinks' consumer group runs the
//! classic protocol in one test and KIP-848's `consumer` protocol in the other, with sinks
//! joining and leaving mid-stream.

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use support::broker::Broker;
use support::stack::Stack;
use support::workload::{initial_rows, schema, sigterm, workload, Rng, StopOnDrop, TABLES};

const REPLICATED: &str = "replication_factor = 3\n\
     topic_config = { \"min.insync.replicas\" = \"2\" }";

fn admin(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cluster-test-admin")
        .create()
        .expect("consumer")
}

/// (topic, partition) → (leader node id, replicas, in-sync replicas) of binlake's topics.
fn partitions(c: &BaseConsumer) -> HashMap<(String, i32), (i32, usize, usize)> {
    let md = c
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("metadata");
    md.topics()
        .iter()
        .filter(|t| t.name().starts_with("cdc.") || t.name() == "_schemas")
        .flat_map(|t| {
            t.partitions().iter().map(|p| {
                (
                    (t.name().to_string(), p.id()),
                    (p.leader(), p.replicas().len(), p.isr().len()),
                )
            })
        })
        .collect()
}

/// The node that leads most partitions of the topic with the most records.
fn busiest_leader(c: &BaseConsumer) -> i32 {
    let parts = partitions(c);
    let mut records: HashMap<&str, i64> = HashMap::new();
    for (t, p) in parts.keys() {
        let (low, high) = c
            .fetch_watermarks(t, *p, Duration::from_secs(30))
            .expect("watermarks");
        *records.entry(t.as_str()).or_default() += high - low;
    }
    let (topic, n) = records
        .iter()
        .filter(|(t, _)| t.starts_with("cdc.app."))
        .max_by_key(|(_, n)| **n)
        .expect("a table topic");
    let mut leads: HashMap<i32, usize> = HashMap::new();
    for ((t, _), (leader, _, _)) in &parts {
        if t == topic {
            *leads.entry(*leader).or_default() += 1;
        }
    }
    let (leader, count) = leads.into_iter().max_by_key(|(_, n)| *n).expect("a leader");
    println!("busiest topic {topic} ({n} records): node {leader} leads {count} of its partitions");
    leader
}

/// Waits until every partition of binlake's topics has all its replicas in sync.
fn wait_fully_replicated(c: &BaseConsumer, limit: Duration) {
    let start = Instant::now();
    loop {
        let parts = partitions(c);
        let behind: Vec<_> = parts
            .iter()
            .filter(|(_, (leader, replicas, isr))| *leader < 0 || isr < replicas)
            .collect();
        if behind.is_empty() && !parts.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "partitions not fully replicated after {limit:?}: {behind:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn assert_alive(stack: &Stack, run: &mut Child, sinks: &mut [(usize, Child)], when: &str) {
    assert!(
        run.try_wait().ok().flatten().is_none(),
        "run exited {when}:\n{}",
        stack.run_log(0)
    );
    for (n, s) in sinks.iter_mut() {
        assert!(
            s.try_wait().ok().flatten().is_none(),
            "sink {n} exited {when}:\n{}",
            stack.sink_log(*n)
        );
    }
}

/// Reader stats without the per-offset lists.
fn brief(stats: &serde_json::Value) -> serde_json::Value {
    let mut s = stats.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("applied");
        m.remove("offsets");
    }
    s
}

fn sink_config(root: &std::path::Path) -> String {
    format!(
        "[sink]\nroot = \"file://{}\"\nformat = \"parquet\"\ngroup_id = \"lake\"\n\
         rotate_interval = \"2s\"\n",
        root.display()
    )
}

/// The whole scenario, with the sinks' consumer group protocol set by `group_protocol`.
fn failover(group_protocol: &str) {
    let broker = Broker::start_cluster(3);
    let properties = [("group.protocol", group_protocol)];
    let mut stack = Stack::start_on(broker, &properties, REPLICATED, "");
    let admin = admin(&stack.broker.bootstrap());
    schema(&stack);
    initial_rows(&stack, 300);
    let lake = stack.lake_dir("lake");
    let mut run = stack.spawn_run(0);
    let mut sinks = vec![(0, stack.spawn_sink(0, &sink_config(&lake)))];
    stack.wait_converged(&TABLES, Duration::from_secs(180));
    // Every topic binlake created is replicated 3 times.
    let parts = partitions(&admin);
    assert!(
        parts.values().all(|(_, replicas, _)| *replicas == 3),
        "{parts:?}"
    );

    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let stack = &stack;
        let writer = scope.spawn(|| {
            let mut rng = Rng(0xc1a5);
            while !stop.load(Ordering::Relaxed) {
                workload(stack, &mut rng, 20, 300);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // A second sink joins the group mid-stream (a rebalance).
        std::thread::sleep(Duration::from_secs(3));
        sinks.push((1, stack.spawn_sink(1, &sink_config(&lake))));
        std::thread::sleep(Duration::from_secs(5));
        assert_alive(stack, &mut run, &mut sinks, "under the writer");
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
    });

    // SIGKILL of the leader of the busiest partitions, under the writer.
    let leader = busiest_leader(&admin);
    let i = (leader - 1) as usize;
    let stop = AtomicBool::new(false);
    let mut rng = Rng(0xdead);
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let stack = &stack;
        let writer = scope.spawn(|| {
            let mut rng = Rng(0xfa11);
            while !stop.load(Ordering::Relaxed) {
                workload(stack, &mut rng, 20, 300);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // Let the writer run a moment, so that the kill lands among records in flight.
        std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
        // The Broker is not shared with the writer thread: kill through its pid.
        let pid = stack.broker.pid(i);
        let _ = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .stdin(Stdio::null())
            .status();
        println!("killed node {leader} (pid {pid})");
        std::thread::sleep(Duration::from_secs(8));
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
    });
    assert_alive(&stack, &mut run, &mut sinks, "while a broker was down");
    stack.broker.kill9_node(i); // reaps the killed process
    stack.broker.start_node(i);
    wait_fully_replicated(&admin, Duration::from_secs(120));
    stack.wait_converged(&TABLES, Duration::from_secs(180));

    // A rolling restart: each broker stopped, started, and caught up before the next. The
    // first sink leaves the group on the way and comes back (two more rebalances).
    for node in 0..3 {
        let mut rng2 = Rng(0x5eed + node as u64);
        workload(&stack, &mut rng2, 30, 300);
        stack.broker.stop_node(node);
        workload(&stack, &mut rng2, 30, 300);
        if node == 1 {
            let (n, mut s) = sinks.remove(0);
            assert_eq!(sigterm(&mut s), Some(0), "{}", stack.sink_log(n));
        }
        stack.broker.start_node(node);
        wait_fully_replicated(&admin, Duration::from_secs(120));
        assert_alive(&stack, &mut run, &mut sinks, "during the rolling restart");
    }
    sinks.push((2, stack.spawn_sink(2, &sink_config(&lake))));
    workload(&stack, &mut Rng(0xe4d), 50, 300);

    let topics = stack.wait_converged(&TABLES, Duration::from_secs(180));
    println!("topics: {}", brief(&topics));
    assert_eq!(topics["duplicate_positions"], 0, "{topics}");
    assert_eq!(topics["misplaced"], 0, "{topics}");
    let read = || stack.read_lake(&lake, "parquet");
    let lake_stats = stack.wait_converged_with(&TABLES, Duration::from_secs(180), "lake", read);
    println!("lake: {}", brief(&lake_stats));
    assert_eq!(lake_stats["duplicate_offsets"], 0, "{lake_stats}");
    assert_eq!(lake_stats["stray_files"], 0, "{lake_stats}");
    assert_alive(&stack, &mut run, &mut sinks, "at the end");

    // A rebuild from the replicated topics equals the source.
    stack.assert_rebuilt_equal(&TABLES, "restore");
    for (n, mut s) in sinks {
        assert_eq!(sigterm(&mut s), Some(0), "{}", stack.sink_log(n));
    }
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(0));
    stack.broker.stop();
}

#[test]
fn leader_kill_and_rolling_restart_lose_nothing_with_the_classic_group_protocol() {
    failover("classic");
}

#[test]
fn leader_kill_and_rolling_restart_lose_nothing_with_the_kip848_group_protocol() {
    failover("consumer");
}
