//! The emulated link of scenario (h): a network namespace for the server sides and
//! the target, joined to this one by a pair of TUN devices whose packets a helper
//! (`link.py`) delays by half the round trip each way. Loopback hides round trips:
//! this is where a tunnel that needs one more of them shows it. The kernel here has
//! no `sch_netem`, so the delay is added in user space. Needs root (CAP_NET_ADMIN).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::children::Child;
use crate::scenarios::latency::percentile;

/// The link's two ends, from the benchmarking range (RFC 2544), which no real
/// network routes.
pub(crate) const NEAR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub(crate) const FAR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

const FORWARDER: &str = include_str!("link.py");

/// The far namespace's name, before the pid of the `tp-bench` that made it.
const NETNS_PREFIX: &str = "tpb-far-";

/// A running link. Dropping it stops the forwarder (its TUN devices go with it) and
/// deletes the namespace, and with it everything still bound there.
#[derive(Debug)]
pub(crate) struct Link {
    netns: String,
    forwarder: Option<Child>,
}

impl Link {
    /// Creates the namespace and the link with round trip `rtt`, and addresses both ends.
    pub(crate) fn start(work_dir: &Path, rtt: Duration) -> anyhow::Result<Link> {
        remove_stale();
        let id = std::process::id();
        let netns = format!("{NETNS_PREFIX}{id}");
        let (near_dev, far_dev) = (format!("tpb{id}n"), format!("tpb{id}f"));
        ip(&["netns", "add", &netns]).context("creating the far network namespace")?;
        // From here on, dropping `link` cleans up.
        let mut link = Link {
            netns,
            forwarder: None,
        };
        let log = work_dir.join("link.log");
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(FORWARDER)
            .arg(&near_dev)
            .arg(&far_dev)
            .arg((rtt.as_micros() / 2).to_string());
        let mut forwarder = Child::spawn("link forwarder (python3)", cmd, &log)?;
        forwarder.wait_output("ready")?;
        link.forwarder = Some(forwarder);
        let ns = link.netns.as_str();
        let (near, far) = (NEAR.to_string(), FAR.to_string());
        ip(&["link", "set", &far_dev, "netns", ns])?;
        // No IPv6 link-local addresses, so no router solicitations and the like
        // on the link: only the benchmark's own packets cross it. Best effort: a
        // kernel booted without IPv6 refuses the setting and sends none anyway.
        let _ = ip(&["link", "set", &near_dev, "addrgenmode", "none"]);
        let _ = ip(&["-n", ns, "link", "set", &far_dev, "addrgenmode", "none"]);
        ip(&["addr", "add", &near, "peer", &far, "dev", &near_dev])?;
        ip(&["link", "set", &near_dev, "up"])?;
        ip(&[
            "-n", ns, "addr", "add", &far, "peer", &near, "dev", &far_dev,
        ])?;
        ip(&["-n", ns, "link", "set", &far_dev, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(link)
    }

    /// `cmd` as it runs in the far namespace: `ip netns exec` changes namespace and
    /// execs the program, so the pid (and process group) is the program's.
    pub(crate) fn far_command(&self, cmd: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.netns])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        drop(self.forwarder.take());
        if let Err(e) = ip(&["netns", "del", &self.netns]) {
            eprintln!("tp-bench: {e:#}");
        }
    }
}

/// The round trip as a TCP connection sees it: the p50 of `count` connects to `addr`
/// across the link (one round trip each, plus the forwarder's own time).
pub(crate) fn measured_rtt(addr: SocketAddr, count: usize) -> anyhow::Result<Duration> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr} across the link"))?;
        samples.push(start.elapsed().as_secs_f64());
        drop(conn);
    }
    samples.sort_by(f64::total_cmp);
    Ok(Duration::from_secs_f64(percentile(&samples, 50.0)))
}

/// Removes what a killed `tp-bench` left behind, recognised by the dead pid in
/// the names: its far namespace (a namespace is not a process and outlives it)
/// with the processes still in it, and its forwarder, which holds the link's
/// addresses on its TUN devices.
fn remove_stale() {
    // Ours is not made yet: a name with this process's pid is an earlier
    // run's whose pid came round again.
    let ours = std::process::id().to_string();
    let dead = |pid: &str| {
        pid.parse::<u32>().is_ok() && (pid == ours || !Path::new("/proc").join(pid).exists())
    };
    let namespaces = Command::new("ip").args(["netns", "list"]).output();
    let listed = namespaces.map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    for line in listed.unwrap_or_default().lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if !name.strip_prefix(NETNS_PREFIX).is_some_and(dead) {
            continue;
        }
        if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .for_each(kill);
        }
        match ip(&["netns", "del", name]) {
            Ok(()) => eprintln!("tp-bench: removed {name}, left by a run that did not finish"),
            Err(e) => eprintln!("tp-bench: {e:#}"),
        }
    }
    // Forwarders: `python3 -c SCRIPT tpbPIDn tpbPIDf DELAY`.
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let owner = args.get(3).and_then(|near| {
            let near = std::str::from_utf8(near).ok()?;
            near.strip_prefix("tpb")?.strip_suffix('n')
        });
        if args.get(1) == Some(&&b"-c"[..]) && owner.is_some_and(dead) {
            kill(&entry.file_name().to_string_lossy());
        }
    }
}

/// Sends SIGTERM to `pid`.
fn kill(pid: &str) {
    crate::children::kill("TERM", pid);
}

/// Runs `ip ARGS`; its stderr is the error.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
