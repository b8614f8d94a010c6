//! The results of `btvisor bench`: cells with their runs, medians and ratios against native,
//! rendered as markdown tables (for BENCHMARKS.md) or as one JSON document.

use std::fmt::Write as _;

/// One table cell: the value of each successful run, and why the others failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    pub samples: Vec<f64>,
    pub failure: Option<String>,
    /// Runs attempted (successful or not).
    pub attempts: usize,
}

impl Cell {
    pub fn record(&mut self, r: Result<f64, String>) {
        self.attempts += 1;
        match r {
            Ok(v) => self.samples.push(v),
            Err(why) => {
                if self.failure.is_none() {
                    self.failure = Some(why);
                }
            }
        }
    }

    /// A failure that is not a run (the engine could not boot, say).
    pub fn fail(&mut self, why: &str) {
        if self.failure.is_none() {
            self.failure = Some(why.to_string());
        }
    }

    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    pub fn median(&self) -> Option<f64> {
        median(&self.samples)
    }

    /// " [2 of 3 runs]" when some runs failed.
    fn partial(&self) -> String {
        if !self.samples.is_empty() && self.samples.len() < self.attempts {
            format!(" [{} of {} runs]", self.samples.len(), self.attempts)
        } else {
            String::new()
        }
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// Three significant digits, no exponent.
pub fn sig3(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A row of the workload table.
#[derive(Debug, Clone)]
pub struct WorkloadRow {
    pub name: String,
    pub what: String,
    pub ops: u64,
    /// Microseconds per operation: native first, then one per engine.
    pub cells: Vec<Cell>,
}

/// The Linux workloads under each engine against native.
#[derive(Debug, Clone)]
pub struct WorkloadTable {
    /// The engines' names (the native column comes first and is not listed).
    pub engines: Vec<String>,
    pub rows: Vec<WorkloadRow>,
    /// Seconds from VM start to the shell prompt, per engine.
    pub boot: Vec<Cell>,
    /// Where the native file-system workload ran.
    pub native_tmpfs: String,
}

/// The nanobenchmarks: cycles per operation, per engine.
#[derive(Debug, Clone)]
pub struct NanoTable {
    pub engines: Vec<String>,
    /// (operation, what it measures, one cell per engine)
    pub rows: Vec<(String, String, Vec<Cell>)>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub command: String,
    pub date: String,
    pub machine: String,
    pub guest: Option<String>,
    pub runs: usize,
    pub workloads: Option<WorkloadTable>,
    pub nano: Option<NanoTable>,
    /// Engines left out, and why.
    pub notes: Vec<String>,
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn failed_cell(c: &Cell) -> String {
    format!(
        "failed: {}",
        md_escape(c.failure.as_deref().unwrap_or("no result"))
    )
}

/// A failure cell that repeats the one above it (an engine that did not boot fails every
/// workload alike) says so instead of repeating the reason.
fn same_as_above(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::with_capacity(rows.len());
    for (r, row) in rows.iter().enumerate() {
        out.push(
            row.iter()
                .enumerate()
                .map(|(c, text)| {
                    let above = r.checked_sub(1).and_then(|p| rows[p].get(c));
                    if text.starts_with("failed: ") && above == Some(text) {
                        "failed: as above".to_string()
                    } else {
                        text.clone()
                    }
                })
                .collect(),
        );
    }
    out
}

impl WorkloadTable {
    /// "X us (R x native)" for engine column `e` (0-based) of `row`.
    fn engine_cell(row: &WorkloadRow, e: usize) -> String {
        let c = &row.cells[e + 1];
        let Some(t) = c.median() else {
            return failed_cell(c);
        };
        let ratio = row.cells[0]
            .median()
            .filter(|n| *n > 0.0)
            .map(|n| format!(" ({}x native)", sig3(t / n)))
            .unwrap_or_default();
        format!("{} us{ratio}{}", sig3(t), c.partial())
    }

    pub fn markdown(&self, runs: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Time per operation in microseconds, median of {runs} run{} (each run a fresh boot); \
             in parentheses the ratio engine time / native time, how many times slower than the \
             same static binary run natively on the host in the same `btvisor bench` run.\n",
            if runs == 1 { "" } else { "s" }
        );
        let _ = write!(s, "| workload | operations | native |");
        for e in &self.engines {
            let _ = write!(s, " {e} |");
        }
        let _ = write!(s, "\n|---|---|---|");
        for _ in &self.engines {
            s.push_str("---|");
        }
        s.push('\n');
        let texts: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| {
                let native = match row.cells[0].median() {
                    Some(t) => format!("{} us{}", sig3(t), row.cells[0].partial()),
                    None => failed_cell(&row.cells[0]),
                };
                std::iter::once(native)
                    .chain((0..self.engines.len()).map(|e| Self::engine_cell(row, e)))
                    .collect()
            })
            .collect();
        for (row, cells) in self.rows.iter().zip(same_as_above(texts)) {
            let _ = write!(s, "| {} | {} |", row.name, row.ops);
            for c in cells {
                let _ = write!(s, " {c} |");
            }
            s.push('\n');
        }
        if !self.engines.is_empty() {
            let boots: Vec<String> = self
                .engines
                .iter()
                .zip(&self.boot)
                .map(|(e, c)| match c.median() {
                    Some(t) => format!("{e} {t:.1} s"),
                    None => format!("{e} {}", failed_cell(c)),
                })
                .collect();
            let _ = writeln!(
                s,
                "\nBoot to the shell prompt (median; not in the figures above): {}.",
                boots.join("; ")
            );
        }
        let _ = writeln!(
            s,
            "\nWorkloads (benches/guest-workloads/, gcc -O2 -static; in the guest in /bench of the \
             initramfs, tmpfs on /tmp; natively pinned to one CPU, as the guest has one vCPU, \
             with tmpfs on {}):",
            self.native_tmpfs
        );
        for row in &self.rows {
            let _ = writeln!(s, "- {}: {}", row.name, row.what);
        }
        s
    }
}

impl NanoTable {
    pub fn markdown(&self, runs: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Guest cycles per operation (RDTSC) in benches/nanobench/nanobench64.S, a test kernel \
             with nothing else running: each figure is the median of {runs} VM run{}, each the \
             median of 11 batches of 1000 operations after a warm-up batch. The loop's own \
             overhead (empty-loop) is included in every figure.\n",
            if runs == 1 { "" } else { "s" }
        );
        let _ = write!(s, "| operation |");
        for e in &self.engines {
            let _ = write!(s, " {e} |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &self.engines {
            s.push_str("---|");
        }
        s.push('\n');
        let texts: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|(_, _, cells)| {
                cells
                    .iter()
                    .map(|c| match c.median() {
                        Some(v) => format!("{v:.1}{}", c.partial()),
                        None => failed_cell(c),
                    })
                    .collect()
            })
            .collect();
        for ((name, _, _), cells) in self.rows.iter().zip(same_as_above(texts)) {
            let _ = write!(s, "| {name} |");
            for c in cells {
                let _ = write!(s, " {c} |");
            }
            s.push('\n');
        }
        s.push_str("\nOperations:\n");
        for (name, what, _) in &self.rows {
            let _ = writeln!(s, "- {name}: {what}");
        }
        s
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Command: `{}`\n", self.command);
        let _ = writeln!(s, "Date: {}\n", self.date);
        let _ = writeln!(s, "Machine: {}\n", self.machine);
        if let Some(g) = &self.guest {
            let _ = writeln!(s, "Guest: {g}\n");
        }
        for n in &self.notes {
            let _ = writeln!(s, "Note: {n}\n");
        }
        if let Some(w) = &self.workloads {
            let _ = writeln!(s, "### Linux workloads\n");
            s.push_str(&w.markdown(self.runs));
            s.push('\n');
        }
        if let Some(n) = &self.nano {
            let _ = writeln!(s, "### Nanobenchmarks\n");
            s.push_str(&n.markdown(self.runs));
        }
        s
    }

    pub fn json(&self) -> String {
        let cell = |c: &Cell, unit: &str, native: Option<f64>| {
            let mut o = vec![
                (unit.to_string(), c.median().map_or(Json::Null, Json::Num)),
                (
                    "runs".to_string(),
                    Json::Arr(c.samples.iter().map(|v| Json::Num(*v)).collect()),
                ),
                ("attempts".to_string(), Json::Num(c.attempts as f64)),
            ];
            if let (Some(n), Some(t)) = (native, c.median()) {
                if n > 0.0 {
                    o.push(("ratio_to_native".into(), Json::Num(t / n)));
                }
            }
            o.push((
                "failed".into(),
                c.failure.clone().map_or(Json::Null, Json::Str),
            ));
            Json::Obj(o)
        };
        let mut top = vec![
            ("command".to_string(), Json::Str(self.command.clone())),
            ("date".into(), Json::Str(self.date.clone())),
            ("machine".into(), Json::Str(self.machine.clone())),
            (
                "guest".into(),
                self.guest.clone().map_or(Json::Null, Json::Str),
            ),
            ("runs".into(), Json::Num(self.runs as f64)),
            (
                "notes".into(),
                Json::Arr(self.notes.iter().cloned().map(Json::Str).collect()),
            ),
        ];
        if let Some(w) = &self.workloads {
            let rows = w
                .rows
                .iter()
                .map(|r| {
                    let native = r.cells[0].median();
                    let mut results =
                        vec![("native".to_string(), cell(&r.cells[0], "us_per_op", None))];
                    for (e, c) in w.engines.iter().zip(&r.cells[1..]) {
                        results.push((e.clone(), cell(c, "us_per_op", native)));
                    }
                    Json::Obj(vec![
                        ("name".into(), Json::Str(r.name.clone())),
                        ("what".into(), Json::Str(r.what.clone())),
                        ("ops".into(), Json::Num(r.ops as f64)),
                        ("results".into(), Json::Obj(results)),
                    ])
                })
                .collect();
            let boot = w
                .engines
                .iter()
                .zip(&w.boot)
                .map(|(e, c)| (e.clone(), cell(c, "seconds", None)))
                .collect();
            top.push((
                "workloads".into(),
                Json::Obj(vec![
                    (
                        "engines".into(),
                        Json::Arr(w.engines.iter().cloned().map(Json::Str).collect()),
                    ),
                    ("native_tmpfs".into(), Json::Str(w.native_tmpfs.clone())),
                    ("boot_to_prompt".into(), Json::Obj(boot)),
                    ("rows".into(), Json::Arr(rows)),
                ]),
            ));
        }
        if let Some(n) = &self.nano {
            let rows = n
                .rows
                .iter()
                .map(|(name, what, cells)| {
                    Json::Obj(vec![
                        ("name".into(), Json::Str(name.clone())),
                        ("what".into(), Json::Str(what.clone())),
                        (
                            "results".into(),
                            Json::Obj(
                                n.engines
                                    .iter()
                                    .zip(cells)
                                    .map(|(e, c)| (e.clone(), cell(c, "cycles", None)))
                                    .collect(),
                            ),
                        ),
                    ])
                })
                .collect();
            top.push((
                "nano".into(),
                Json::Obj(vec![
                    (
                        "engines".into(),
                        Json::Arr(n.engines.iter().cloned().map(Json::Str).collect()),
                    ),
                    ("rows".into(), Json::Arr(rows)),
                ]),
            ));
        }
        let mut out = String::new();
        Json::Obj(top).write(&mut out, 0);
        out.push('\n');
        out
    }
}

/// Just enough JSON to write the report (no dependency for one document).
#[derive(Debug, Clone)]
pub enum Json {
    Null,
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Json {
    fn write(&self, out: &mut String, indent: usize) {
        let pad = |out: &mut String, n: usize| out.push_str(&"  ".repeat(n));
        match self {
            Json::Null => out.push_str("null"),
            Json::Num(v) if v.is_finite() => {
                if v.fract() == 0.0 && v.abs() < 1e15 {
                    let _ = write!(out, "{}", *v as i64);
                } else {
                    let _ = write!(out, "{v}");
                }
            }
            Json::Num(_) => out.push_str("null"),
            Json::Str(s) => json_str(out, s),
            Json::Arr(a) if a.is_empty() => out.push_str("[]"),
            Json::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    pad(out, indent + 1);
                    v.write(out, indent + 1);
                }
                out.push('\n');
                pad(out, indent);
                out.push(']');
            }
            Json::Obj(o) if o.is_empty() => out.push_str("{}"),
            Json::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    pad(out, indent + 1);
                    json_str(out, k);
                    out.push_str(": ");
                    v.write(out, indent + 1);
                }
                out.push('\n');
                pad(out, indent);
                out.push('}');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(samples: &[f64], failure: Option<&str>, attempts: usize) -> Cell {
        Cell {
            samples: samples.to_vec(),
            failure: failure.map(str::to_string),
            attempts,
        }
    }

    fn report() -> Report {
        Report {
            command: "btvisor bench --runs 3".into(),
            date: "2026-11-21 23:50 UTC".into(),
            machine: "2 CPUs".into(),
            guest: None,
            runs: 3,
            workloads: Some(WorkloadTable {
                engines: vec!["bt".into(), "kvm".into()],
                rows: vec![
                    WorkloadRow {
                        name: "getpid".into(),
                        what: "a syscall".into(),
                        ops: 1000,
                        cells: vec![
                            cell(&[0.2, 0.25, 0.3], None, 3),
                            cell(&[4.0, 5.0], Some("x"), 3),
                            cell(&[], Some("no shell prompt | within 120 s"), 1),
                        ],
                    },
                    WorkloadRow {
                        name: "compute".into(),
                        what: "sieve".into(),
                        ops: 10,
                        cells: vec![
                            cell(&[], Some("gcc"), 1),
                            cell(&[30.0], None, 1),
                            cell(&[], Some("no shell prompt | within 120 s"), 1),
                        ],
                    },
                ],
                boot: vec![cell(&[9.5, 10.1, 9.9], None, 3), cell(&[], Some("boom"), 1)],
                native_tmpfs: "/dev/shm".into(),
            }),
            nano: Some(NanoTable {
                engines: vec!["bt".into(), "kvm".into()],
                rows: vec![(
                    "syscall".into(),
                    "SYSCALL \"and\" SYSRET".into(),
                    vec![
                        cell(&[356.9], None, 1),
                        cell(&[], Some("guest: exc #GP"), 1),
                    ],
                )],
            }),
            notes: vec![],
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn markdown_tables() {
        let md = report().markdown();
        assert!(
            md.contains("| workload | operations | native | bt | kvm |\n|---|---|---|---|---|\n")
        );
        assert!(md.contains(
            "| getpid | 1000 | 0.250 us | 4.50 us (18.0x native) [2 of 3 runs] | \
             failed: no shell prompt \\| within 120 s |\n"
        ));
        assert!(md.contains("| compute | 10 | failed: gcc | 30.0 us | failed: as above |\n"));
        assert!(md.contains("Boot to the shell prompt (median; not in the figures above): bt 9.9 s; kvm failed: boom."));
        assert!(md.contains("| operation | bt | kvm |\n|---|---|---|\n| syscall | 356.9 | failed: guest: exc #GP |\n"));
    }

    #[test]
    fn json_document() {
        let j = report().json();
        assert!(j.contains("\"ratio_to_native\": 18"), "{j}");
        assert!(
            j.contains("\"what\": \"SYSCALL \\\"and\\\" SYSRET\""),
            "{j}"
        );
        assert!(j.contains("\"failed\": \"guest: exc #GP\""), "{j}");
        assert!(j.contains("\"us_per_op\": null"), "{j}");
        // Balanced brackets outside strings: a cheap well-formedness check.
        let (mut depth, mut in_str, mut esc) = (0i32, false, false);
        for c in j.chars() {
            match (in_str, esc, c) {
                (true, true, _) => esc = false,
                (true, false, '\\') => esc = true,
                (true, false, '"') => in_str = false,
                (false, _, '"') => in_str = true,
                (false, _, '{' | '[') => depth += 1,
                (false, _, '}' | ']') => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0);
        }
        assert_eq!(depth, 0);
    }
}
