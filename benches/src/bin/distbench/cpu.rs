//! CPU sampling over a measured window: the CPU time of each tracked process group
//! (`/proc/<pid>/stat`) and the busy share of the whole machine (`/proc/stat`), as a
//! [`CpuReport`].

use std::time::Instant;

use serde_json::json;

use crate::driver::Window;

/// Linux clock ticks per second (`getconf CLK_TCK`), the unit of `/proc/<pid>/stat` times.
const CLOCK_TICKS: f64 = 100.0;
/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with field 3, the state.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS)
}

/// Pids of every process whose command name is `comm`.
fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect()
}

/// Busy and total CPU seconds of the whole machine, from `/proc/stat`.
fn machine_cpu_secs() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0.0);
    Some(((total - idle) / CLOCK_TICKS, total / CLOCK_TICKS))
}

/// A named group of processes whose CPU time is sampled.
#[derive(Clone)]
pub(crate) struct Tracked {
    /// The group's name in the report.
    name: String,
    /// Its processes.
    pids: Vec<u32>,
    /// Look the pids up by this command name when the window starts (PostgreSQL forks a
    /// backend per connection, and the nodes' pools open connections as load grows).
    comm: Option<&'static str>,
}

impl Tracked {
    /// A group of fixed pids.
    pub(crate) fn of(name: &str, pids: Vec<u32>) -> Self {
        Tracked {
            name: name.into(),
            pids,
            comm: None,
        }
    }

    /// Every process named `comm`, looked up when the measured window starts.
    pub(crate) fn named(comm: &'static str) -> Self {
        Tracked {
            name: comm.into(),
            pids: Vec::new(),
            comm: Some(comm),
        }
    }

    /// CPU seconds used so far, per pid that is still there.
    fn cpu(&self) -> std::collections::HashMap<u32, f64> {
        self.pids
            .iter()
            .filter_map(|p| Some((*p, proc_cpu_secs(*p)?)))
            .collect()
    }
}

/// CPU use over a measured window: for each tracked group, the share of one core it used
/// (1.0 = one full core); `machine` is the busy share of all cores of the machine, all
/// processes included.
#[derive(Clone, Debug, Default)]
pub(crate) struct CpuReport {
    /// Each tracked group's name and the share of one core it used.
    per_process: Vec<(String, f64)>,
    /// Busy cores of the whole machine (all processes).
    machine_busy_cores: f64,
    /// Cores of the machine (0 when `/proc/stat` could not be read).
    machine_cores: f64,
}

impl CpuReport {
    /// The report as the `*_cpu` object of the `RESULT` line.
    pub(crate) fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (n, c) in &self.per_process {
            m.insert(n.clone(), json!((c * 1000.0).round() / 1000.0));
        }
        json!({
            "cores_used": m,
            "machine_busy_cores": (self.machine_busy_cores * 1000.0).round() / 1000.0,
            "machine_cores": self.machine_cores,
        })
    }

    /// Prints the report as one line, `<label> CPU (% of one core): ...`.
    pub(crate) fn print(&self, label: &str) {
        let parts: Vec<String> = self
            .per_process
            .iter()
            .map(|(n, c)| format!("{n} {:.0}%", c * 100.0))
            .collect();
        println!(
            "{label} CPU (% of one core): {}; machine busy {:.2} of {:.0} cores",
            parts.join(", "),
            self.machine_busy_cores,
            self.machine_cores
        );
    }
}

/// Samples the CPU time of `groups` at the start and at the end of `window`.
pub(crate) async fn sample_cpu(groups: Vec<Tracked>, window: Window) -> CpuReport {
    tokio::time::sleep_until(window.measure_from.into()).await;
    let mut groups = groups;
    for g in &mut groups {
        if let Some(comm) = g.comm {
            g.pids = pids_named(comm);
        }
    }
    let before: Vec<_> = groups.iter().map(Tracked::cpu).collect();
    let m0 = machine_cpu_secs();
    let t0 = Instant::now();
    tokio::time::sleep_until(window.end.into()).await;
    let secs = t0.elapsed().as_secs_f64();
    let after: Vec<_> = groups.iter().map(Tracked::cpu).collect();
    let m1 = machine_cpu_secs();
    let (machine_busy_cores, machine_cores) = match (m0, m1) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
            (cores * (b1 - b0) / (t1 - t0), cores)
        }
        _ => (0.0, 0.0),
    };
    CpuReport {
        per_process: groups
            .iter()
            .zip(before.iter().zip(after))
            // Only processes there at both ends: one that exited in the window would
            // subtract its whole life's CPU (one forked in the window is not counted).
            .map(|(g, (b, a))| {
                let used: f64 = a.iter().filter_map(|(pid, a)| Some(a - b.get(pid)?)).sum();
                (g.name.clone(), used / secs)
            })
            .collect(),
        machine_busy_cores,
        machine_cores,
    }
}

/// The process groups every phase tracks: this process, the NATS server and PostgreSQL (all
/// its processes, other databases' sessions included).
pub(crate) fn common_groups() -> Vec<Tracked> {
    vec![
        Tracked::of("distbench", vec![std::process::id()]),
        Tracked::named("nats-server"),
        Tracked::named("postgres"),
    ]
}
