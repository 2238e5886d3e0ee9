//! What the bench reads besides its own clocks: this process's memory and per-thread CPU from
//! `/proc/self`, and sums and histogram quantiles from two Prometheus text scrapes.

use std::path::Path;

/// `VmHWM` and `VmRSS` of this process, in MiB.
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A metric's value summed over its series in a Prometheus text scrape.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// CPU time (user + system) used so far by this process's threads named `name` (as in
/// `/proc/self/task/*/comm`, at most 15 bytes), in seconds. Unlike wall time it barely moves
/// with other load on the machine.
pub fn thread_cpu_s(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .filter_map(|t| task_cpu_s(&t.path()))
        .sum()
}

/// CPU time (user + system) used so far by the whole process (collector, harness clients and
/// all), in seconds.
pub fn process_cpu_s() -> f64 {
    task_cpu_s(Path::new("/proc/self")).unwrap_or(0.0)
}

/// CPU time (user + system) used so far by the calling thread, in seconds.
pub fn own_thread_cpu_s() -> f64 {
    task_cpu_s(Path::new("/proc/thread-self")).unwrap_or(0.0)
}

/// User + system time of the task at `dir` (`/proc/<pid>/task/<tid>`), in seconds.
fn task_cpu_s(dir: &Path) -> Option<f64> {
    // `sysconf(_SC_CLK_TCK)` is 100 on every Linux this runs on.
    const TICKS_PER_S: f64 = 100.0;
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / TICKS_PER_S)
}

/// The upper bound of the histogram bucket holding quantile `q` of what `name` observed
/// between two scrapes (seconds), or `None` without observations.
pub fn bucket_quantile(before: &str, after: &str, name: &str, q: f64) -> Option<f64> {
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect()
    };
    let (b, a) = (buckets(before), buckets(after));
    let delta: Vec<(f64, f64)> = a
        .iter()
        .map(|&(le, n)| {
            let old = b.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1);
            (le, n - old)
        })
        .collect();
    let total = delta.iter().map(|x| x.1).fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .filter(|x| x.1 >= q * total)
        .map(|x| x.0)
        .fold(None, |m: Option<f64>, le| Some(m.map_or(le, |m| m.min(le))))
}

#[cfg(test)]
mod tests {
    use super::bucket_quantile;

    #[test]
    fn bucket_quantile_reads_the_observations_between_two_scrapes() {
        let h = |a: u32, b: u32, inf: u32| {
            format!(
                "x_bucket{{le=\"0.005\"}} {a}\nx_bucket{{le=\"0.1\"}} {b}\nx_bucket{{le=\"+Inf\"}} {inf}\nx_count {inf}\n"
            )
        };
        // 100 new observations: 90 under 5 ms, 9 under 100 ms, 1 above.
        let (before, after) = (h(10, 10, 10), h(100, 109, 110));
        assert_eq!(bucket_quantile(&before, &after, "x", 0.5), Some(0.005));
        assert_eq!(bucket_quantile(&before, &after, "x", 0.95), Some(0.1));
        assert_eq!(
            bucket_quantile(&before, &after, "x", 1.0),
            Some(f64::INFINITY)
        );
        assert_eq!(bucket_quantile(&after, &after, "x", 0.5), None);
    }
}
