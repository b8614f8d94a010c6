//! Counters for `--stats`: how much was translated, how it ran.

use crate::block::Block;
use std::time::Duration;

#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub blocks_translated: u64,
    pub insns_translated: u64,
    pub insns_lifted: u64,
    pub insns_callout: u64,
    pub helper_calls_lifted: u64,
    /// Instructions translated into native-step helper calls (x87/MMX/SSE).
    pub insns_native_step: u64,
    pub blocks_run: u64,
    pub chained: u64,
    pub jump_cache_hits: u64,
    pub translate_time: Duration,
    /// Tier 1: blocks compiled, their guest instructions, time spent in Cranelift.
    pub blocks_compiled: u64,
    pub insns_compiled: u64,
    pub compile_time: Duration,
    pub compile_failures: u64,
    /// Block runs by tier (`blocks_run` = both).
    pub runs_compiled: u64,
    pub runs_interpreted: u64,
}

impl Stats {
    pub fn note_translation(&mut self, b: &Block, took: Duration) {
        self.blocks_translated += 1;
        self.insns_translated += b.insns.len() as u64;
        self.insns_lifted += b.counts.lifted as u64;
        self.insns_callout += b.counts.callouts as u64;
        self.helper_calls_lifted += b.counts.helpers as u64;
        self.insns_native_step += b.counts.native_steps as u64;
        self.translate_time += took;
    }

    pub fn note_compile(&mut self, b: &Block, took: Duration) {
        self.blocks_compiled += 1;
        self.insns_compiled += b.insns.len() as u64;
        self.compile_time += took;
    }
}
