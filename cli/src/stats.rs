//! `--stats`: what ran, how it was translated and how often the guest needed the runtime.

use btvisor_runtime::Vm;
use std::fmt::Write;

pub fn render(vm: &Vm) -> String {
    let t = &vm.translator.stats;
    let r = &vm.machine.stats;
    let mut s = String::new();
    let _ = writeln!(s, "--- btvisor statistics ---");
    let _ = writeln!(
        s,
        "wall time                 {:.3} s",
        vm.started.elapsed().as_secs_f64()
    );
    let _ = writeln!(s, "blocks translated         {}", t.blocks_translated);
    let _ = writeln!(s, "guest insns translated    {}", t.insns_translated);
    let _ = writeln!(s, "  lifted                  {}", t.insns_lifted);
    let _ = writeln!(s, "  callouts                {}", t.insns_callout);
    let _ = writeln!(s, "  native-step             {}", t.insns_native_step);
    let _ = writeln!(
        s,
        "  not supported           {}",
        t.insns_translated - t.insns_lifted - t.insns_callout - t.insns_native_step
    );
    let _ = writeln!(s, "  helper calls in lifts   {}", t.helper_calls_lifted);
    let _ = writeln!(
        s,
        "translate time            {:.3} ms ({:.2} us/insn)",
        t.translate_time.as_secs_f64() * 1e3,
        t.translate_time.as_secs_f64() * 1e6 / t.insns_translated.max(1) as f64
    );
    let _ = writeln!(
        s,
        "blocks compiled (tier 1)  {} ({} insns, {:.3} ms, {} failures)",
        t.blocks_compiled,
        t.insns_compiled,
        t.compile_time.as_secs_f64() * 1e3,
        t.compile_failures
    );
    let _ = writeln!(s, "native steps run          {}", vm.cpu.native_steps);
    let _ = writeln!(s, "blocks run                {}", t.blocks_run);
    let _ = writeln!(s, "  interpreted (tier 0)    {}", t.runs_interpreted);
    let _ = writeln!(s, "  compiled (tier 1)       {}", t.runs_compiled);
    let _ = writeln!(s, "  chained                 {}", t.chained);
    let _ = writeln!(s, "  jump-cache hits         {}", t.jump_cache_hits);
    let _ = writeln!(
        s,
        "translations invalidated  {}",
        vm.translator.cache.invalidated
    );
    let _ = writeln!(
        s,
        "cache flushes             {}",
        vm.translator.cache.flushes
    );
    let _ = writeln!(s, "blocks in cache           {}", vm.translator.cache.len());
    let _ = writeln!(s, "callouts by kind:");
    for (k, n) in &r.callouts {
        let _ = writeln!(s, "  {:<22}  {n}", format!("{k:?}"));
    }
    let _ = writeln!(s, "exceptions by vector:     {:?}", r.exceptions);
    let _ = writeln!(s, "software interrupts:      {:?}", r.software_interrupts);
    let _ = writeln!(s, "external interrupts       {}", r.external_interrupts);
    let _ = writeln!(s, "halts                     {}", r.halts);
    s
}
