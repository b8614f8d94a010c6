//! The translated-code engine: find or make the block at RIP, run it, follow chained
//! successors, and come back to the runtime on exceptions, HLT, stops and exit requests.

use crate::block::{Block, BlockKey};
use crate::cache::TranslationCache;
use crate::cpu::{CpuState, Mode, Seg};
use crate::env::{Env, StopReason};
use crate::exception::Exception;
use crate::interp::{run_block, BlockExit};
use crate::jit::{run_compiled, JitCode, JitSlot, JIT_CODE_LIMIT};
use crate::scan::{scan_block, MAX_FETCH};
use crate::stats::Stats;
use crate::trace;
use rustc_hash::FxHashMap as HashMap;
use std::rc::Rc;
use std::time::Instant;

/// Why `Translator::run` returned.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// Deliver this exception (cpu.rip is the faulting instruction, or the next one for traps
    /// raised by callouts).
    Raise(Exception),
    Halt,
    Stop(StopReason),
    /// The block budget ran out or `cpu.exit_request` was set.
    Yield,
}

/// Run count at which a block is compiled (tier 1) under the default policy.
pub const JIT_THRESHOLD: u64 = 50;

/// Which tier runs blocks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TierPolicy {
    /// Tier 0 only.
    InterpretOnly,
    /// Compile a block once it has run this many times.
    Threshold(u64),
    /// Compile every block before its first run (tests, benchmarks).
    CompileAll,
}

impl TierPolicy {
    /// `BTVISOR_JIT`: `off` (interpret only), `all` (compile everything) or a threshold;
    /// unset means `Threshold(JIT_THRESHOLD)`.
    pub fn from_env() -> TierPolicy {
        match std::env::var("BTVISOR_JIT").as_deref() {
            Ok("off") | Ok("0") | Ok("interp") => TierPolicy::InterpretOnly,
            Ok("all") => TierPolicy::CompileAll,
            Ok(n) => n
                .parse()
                .map(TierPolicy::Threshold)
                .unwrap_or(TierPolicy::Threshold(JIT_THRESHOLD)),
            Err(_) => TierPolicy::Threshold(JIT_THRESHOLD),
        }
    }
}

pub struct Translator {
    pub cache: TranslationCache,
    /// Per-vCPU lookup by (RIP, CS base, mode), valid while the TLB is: cleared whenever the
    /// runtime flushes the soft TLB (`cpu.tlb_generation` changes) or code is invalidated.
    jump_cache: HashMap<(u64, u64, Mode), Rc<Block>>,
    tlb_generation: u64,
    pub stats: Stats,
    /// The last blocks entered (RIPs), for register dumps when the VM stops.
    recent: [u64; 16],
    recent_pos: usize,
    policy: TierPolicy,
}

impl Default for Translator {
    fn default() -> Self {
        Self::new()
    }
}

impl Translator {
    pub fn new() -> Self {
        Translator {
            cache: TranslationCache::new(),
            jump_cache: HashMap::default(),
            tlb_generation: 0,
            stats: Stats::default(),
            recent: [u64::MAX; 16],
            recent_pos: 0,
            policy: TierPolicy::from_env(),
        }
    }

    pub fn set_tier_policy(&mut self, policy: TierPolicy) {
        self.policy = policy;
    }

    pub fn tier_policy(&self) -> TierPolicy {
        self.policy
    }

    /// Run translated code for at most `budget` blocks.
    pub fn run(&mut self, cpu: &mut CpuState, env: &mut dyn Env, budget: u64) -> RunExit {
        let mut prev: Option<(Rc<Block>, u8)> = None;
        // STI and MOV SS block interrupts until one more instruction completed; a block is at
        // least one instruction, so the shadow ends after the next block (SDM Vol. 3, 6.8.3).
        let mut shadow_block_run = false;
        for _ in 0..budget {
            if cpu.exit_request != 0 {
                return RunExit::Yield;
            }
            if cpu.interrupt_shadow {
                if shadow_block_run {
                    cpu.interrupt_shadow = false;
                    return RunExit::Yield;
                }
                shadow_block_run = true;
            }
            if cpu.tlb_generation != self.tlb_generation {
                self.jump_cache.clear();
                self.tlb_generation = cpu.tlb_generation;
                prev = None;
            }
            let block = match prev
                .take()
                .and_then(|(p, slot)| self.chained(&p, slot, cpu.rip))
            {
                Some(b) => {
                    self.stats.chained += 1;
                    b
                }
                None => match self.lookup(cpu, env) {
                    Ok(b) => b,
                    Err(e) => return RunExit::Raise(e),
                },
            };
            block.exec_count.set(block.exec_count.get() + 1);
            self.recent[self.recent_pos % self.recent.len()] = block.key.rip;
            self.recent_pos += 1;
            self.stats.blocks_run += 1;
            let exit = match self.tier_up(&block) {
                Some(code) => {
                    self.stats.runs_compiled += 1;
                    run_compiled(cpu, env, &block, code)
                }
                None => {
                    self.stats.runs_interpreted += 1;
                    run_block(cpu, env, &block)
                }
            };
            if cpu.code_modified {
                cpu.code_modified = false;
                if self.cache.process_writes() {
                    self.jump_cache.clear();
                }
            }
            match exit {
                BlockExit::Next { slot: Some(s) } if block.valid.get() => prev = Some((block, s)),
                BlockExit::Next { .. } => {}
                BlockExit::Raise(e) => return RunExit::Raise(e),
                BlockExit::Halt => return RunExit::Halt,
                BlockExit::Stop(r) => return RunExit::Stop(r),
            }
        }
        RunExit::Yield
    }

    /// The block's compiled code, compiling it first if the policy says it is hot.
    fn tier_up(&mut self, block: &Block) -> Option<JitCode> {
        match block.jit.get() {
            JitSlot::Code(c) if self.cache.jit.is_live(&c) => return Some(c),
            JitSlot::Interpreted => return None,
            _ => {}
        }
        let hot = match self.policy {
            TierPolicy::InterpretOnly => false,
            TierPolicy::Threshold(n) => block.exec_count.get() >= n,
            TierPolicy::CompileAll => true,
        };
        if !hot || !block.valid.get() {
            return None;
        }
        if block.counts.lifted == 0 || block.has_segment_checks() {
            block.jit.set(JitSlot::Interpreted);
            return None;
        }
        if self.cache.jit.code_bytes() >= JIT_CODE_LIMIT {
            // Frees the module; this block is dropped too and runs interpreted this once.
            self.flush();
            return None;
        }
        let t0 = Instant::now();
        match self.cache.jit.compile(block) {
            Ok(code) => {
                self.stats.note_compile(block, t0.elapsed());
                block.jit.set(JitSlot::Code(code));
                Some(code)
            }
            Err(e) => {
                tracing::warn!(
                    rip = block.key.rip,
                    "tier-1 compile failed, block stays interpreted: {e}"
                );
                self.stats.compile_failures += 1;
                block.jit.set(JitSlot::Interpreted);
                None
            }
        }
    }

    /// The cached successor of `prev` through `slot`, if still valid.
    fn chained(&mut self, prev: &Rc<Block>, slot: u8, rip: u64) -> Option<Rc<Block>> {
        let link = prev.chain[slot as usize].borrow();
        match &*link {
            Some(b) if b.valid.get() && b.key.rip == rip => Some(b.clone()),
            _ => {
                drop(link);
                // Chain for next time when the successor lies in the same linear page as the
                // block start: same page, same physical address.
                let same_page = (prev.key.cs_base.wrapping_add(rip)
                    ^ prev.key.cs_base.wrapping_add(prev.key.rip))
                    < 0x1000;
                if same_page && prev.succ_rip[slot as usize] == rip {
                    if let Some(b) = self.jump_cache.get(&(rip, prev.key.cs_base, prev.key.mode)) {
                        let b = b.clone();
                        *prev.chain[slot as usize].borrow_mut() = Some(b.clone());
                        return Some(b);
                    }
                }
                None
            }
        }
    }

    fn lookup(&mut self, cpu: &mut CpuState, env: &mut dyn Env) -> Result<Rc<Block>, Exception> {
        let mode = cpu.mode();
        let cs_base = cpu.seg[Seg::Cs as usize].base;
        let rip = cpu.rip;
        if let Some(b) = self.jump_cache.get(&(rip, cs_base, mode)) {
            if b.valid.get() {
                self.stats.jump_cache_hits += 1;
                return Ok(b.clone());
            }
        }
        let mut lin = cs_base.wrapping_add(rip);
        if mode.code_bits != 64 {
            lin &= 0xffff_ffff;
        }
        let mut buf = [0u8; MAX_FETCH + 16];
        let want = ((0x1000 - (lin & 0xfff)) as usize).min(MAX_FETCH) + 15;
        let fetched = env.fetch(cpu, lin, &mut buf[..want])?;
        let key = BlockKey {
            rip,
            cs_base,
            phys: fetched.phys,
            mode,
        };
        let block = match self.cache.get(&key) {
            Some(b) => b.clone(),
            None => {
                let t0 = Instant::now();
                let block = Rc::new(scan_block(key, fetched, &buf));
                self.stats.note_translation(&block, t0.elapsed());
                trace::block(&block);
                if block.fetch_fault {
                    return Ok(block);
                }
                for page in self.cache.insert(block.clone()) {
                    cpu.tlb.drop_writes_to_phys(page);
                }
                block
            }
        };
        self.jump_cache.insert((rip, cs_base, mode), block.clone());
        Ok(block)
    }

    /// The RIPs of the most recently entered blocks, oldest first.
    pub fn recent_blocks(&self) -> Vec<u64> {
        let n = self.recent.len();
        (0..n)
            .map(|i| self.recent[(self.recent_pos + i) % n])
            .filter(|&r| r != u64::MAX)
            .collect()
    }

    /// Drop every translation (the guest changed something all blocks depend on).
    pub fn flush(&mut self) {
        self.cache.flush();
        self.jump_cache.clear();
    }
}
