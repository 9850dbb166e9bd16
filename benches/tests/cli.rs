//! End-to-end: the harness binary runs a tiny matrix, replays a trace, measures memory
//! and expiry in child processes, and writes every report file. Asserts the shape of
//! the results, never a timing.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clockcache-bench"))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ccb-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn smoke_run_writes_every_report() {
    let dir = temp_dir("smoke");
    let traces = dir.join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    // Keys 0..200 twice: a cache of 1,000 hits the second pass.
    let text = "0 200 0 0\n0 200 0 0\n";
    let packed = zstd::stream::encode_all(text.as_bytes(), 3).unwrap();
    std::fs::write(traces.join("TINY.lis.zst"), packed).unwrap();
    let out = dir.join("report");
    let run = bin()
        .args(["--smoke", "--threads", "1", "--reps", "1"])
        .args(["--workloads", "read-heavy,get-only"])
        .args(["--mem-entries", "2000", "--expiry-secs", "0.1"])
        .arg("--traces")
        .arg(&traces)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The report opens with what a user came for, and the project's own
    // targets come last, in words of the product, not of its tracker.
    let headings: Vec<&str> = stdout.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(
        headings.first(),
        Some(&"== Throughput (Mops/s, median of the repetitions) ==")
    );
    assert_eq!(headings.get(1), Some(&"== Hit ratio =="));
    assert_eq!(
        headings.last(),
        Some(&"== Targets this project sets itself ==")
    );
    assert!(!stdout.to_lowercase().contains("issue"), "{stdout}");
    for f in [
        "report.md",
        "report.html",
        "results.json",
        "hit-ratio-tiny.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let cells = json["cells"].as_array().unwrap();
    // read-heavy: seven caches (three of them clockcache policies); get-only:
    // the same plus the HashMap.
    assert_eq!(cells.len(), 15);
    let traces = json["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 7);
    for t in traces {
        assert_eq!(t["requests"], 400);
        assert_eq!(t["hit_ratio"], 0.5, "{t}");
    }
    let memory = json["memory"].as_array().unwrap();
    assert_eq!(memory.len(), 6);
    assert!(memory.iter().all(|m| m["entries"].as_u64().unwrap() > 1000));
    let expiry = json["expiry"].as_array().unwrap();
    let names: Vec<&str> = expiry
        .iter()
        .map(|e| e["cache"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["clockcache", "moka"]);
    // The JSON alone re-renders the same Markdown.
    let again = dir.join("again");
    let render = bin()
        .arg("render")
        .arg(out.join("results.json"))
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(render.status.success());
    assert_eq!(
        std::fs::read_to_string(again.join("report.md")).unwrap(),
        std::fs::read_to_string(out.join("report.md")).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_traces_are_reported_and_skipped() {
    let dir = temp_dir("notraces");
    let run = bin()
        .args([
            "--smoke",
            "--threads",
            "1",
            "--reps",
            "1",
            "--workloads",
            "loop",
        ])
        .args(["--caches", "mutex-lru", "--no-mem", "--no-expiry"])
        .arg("--traces")
        .arg(dir.join("nothing-here"))
        .arg("--out")
        .arg(dir.join("report"))
        .output()
        .unwrap();
    assert!(run.status.success());
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("trace replay skipped"), "{stdout}");
    assert!(stdout.contains("Workload: loop 1.1x"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let run = bin()
        .args(["--caches", "nope", "--smoke"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown cache \"nope\""));
    let run = bin().args(["--threads", "0", "--smoke"]).output().unwrap();
    assert_eq!(run.status.code(), Some(1));
}

fn have_redis_server() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn sessions_measures_both_writes_and_both_gets() {
    if !have_redis_server() {
        assert!(
            std::env::var_os("CLOCKCACHE_REQUIRE_REDIS").is_none(),
            "CLOCKCACHE_REQUIRE_REDIS is set but no redis-server is installed"
        );
        eprintln!("SKIPPED sessions_measures_both_writes_and_both_gets: no redis-server on PATH");
        return;
    }
    let out = temp_dir("sessions");
    let run = bin()
        .args(["sessions", "--trials", "5", "--hits", "200", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The report opens with the coherence windows, the figure its reader came for.
    assert!(
        stdout.starts_with("# Tiered session cache: coherence across two instances"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sessions.json")).unwrap()).unwrap();
    for (field, count) in [
        ("delete", 5),
        ("overwrite", 5),
        ("near_hit", 200),
        ("redis_get", 200),
    ] {
        let spread = json[field].get("window").unwrap_or(&json[field]);
        assert_eq!(spread["count"], count, "{field}: {json}");
        let p50 = spread["p50_ns"].as_u64().unwrap();
        assert!(
            p50 > 0 && p50 <= spread["max_ns"].as_u64().unwrap(),
            "{field}: {json}"
        );
    }
    assert!(std::fs::read_to_string(out.join("sessions.md"))
        .unwrap()
        .contains("| delete |"));
}
