//! The translation cache: blocks by key, the physical pages that hold translated code, and
//! invalidation when the guest writes to such a page (Linux patches its own code at boot).

use crate::block::{Block, BlockKey};
use crate::jit::{Jit, JitSlot};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::cell::RefCell;
use std::rc::Rc;

/// Guest-physical pages holding translations, shared with the runtime's MMU: it routes writes
/// to these pages through the slow path and reports them here.
#[derive(Default)]
pub struct CodePages {
    pages: HashSet<u64>,
    /// Pages written since the last `TranslationCache::process_writes`.
    written: Vec<u64>,
}

impl CodePages {
    pub fn contains(&self, phys_page: u64) -> bool {
        self.pages.contains(&(phys_page & !0xfff))
    }
    /// Called by the MMU for every write that lands on a code page.
    pub fn note_write(&mut self, phys_page: u64) {
        self.written.push(phys_page & !0xfff);
    }
}

pub type SharedCodePages = Rc<RefCell<CodePages>>;

/// Most blocks kept before the whole cache is flushed (as VMware's and QEMU's translators do).
pub const MAX_BLOCKS: usize = 1 << 16;

pub struct TranslationCache {
    blocks: HashMap<BlockKey, Rc<Block>>,
    by_page: HashMap<u64, Vec<BlockKey>>,
    pub code_pages: SharedCodePages,
    pub invalidated: u64,
    pub flushes: u64,
    /// Tier-1 code memory. An invalidated block's code stays in the module until the next
    /// flush (cranelift-jit frees whole modules only); `flush` frees it all.
    pub jit: Jit,
}

impl Default for TranslationCache {
    fn default() -> Self {
        Self::new()
    }
}

impl TranslationCache {
    pub fn new() -> Self {
        TranslationCache {
            blocks: HashMap::default(),
            by_page: HashMap::default(),
            code_pages: Rc::new(RefCell::new(CodePages::default())),
            invalidated: 0,
            flushes: 0,
            jit: Jit::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn get(&self, key: &BlockKey) -> Option<&Rc<Block>> {
        self.blocks.get(key)
    }

    /// Insert a new block; returns the pages that just became code pages (the caller drops
    /// soft-TLB write entries for them).
    pub fn insert(&mut self, block: Rc<Block>) -> Vec<u64> {
        if self.blocks.len() >= MAX_BLOCKS {
            self.flush();
        }
        let mut new_pages = Vec::new();
        let mut cp = self.code_pages.borrow_mut();
        for &p in block.pages.iter().filter(|&&p| p != u64::MAX) {
            self.by_page.entry(p).or_default().push(block.key);
            if cp.pages.insert(p) {
                new_pages.push(p);
            }
        }
        drop(cp);
        self.blocks.insert(block.key, block);
        new_pages
    }

    /// Drop every block on the pages written since the last call. Returns true if any were.
    pub fn process_writes(&mut self) -> bool {
        let written: Vec<u64> = std::mem::take(&mut self.code_pages.borrow_mut().written);
        let mut any = false;
        for page in written {
            if let Some(keys) = self.by_page.remove(&page) {
                for k in keys {
                    if let Some(b) = self.blocks.remove(&k) {
                        b.valid.set(false);
                        b.jit.set(JitSlot::None);
                        for c in &b.chain {
                            c.borrow_mut().take();
                        }
                        self.invalidated += 1;
                        any = true;
                    }
                }
            }
            self.code_pages.borrow_mut().pages.remove(&page);
        }
        any
    }

    /// Drop every block and free all compiled code (a new JIT generation starts).
    pub fn flush(&mut self) {
        for b in self.blocks.values() {
            b.valid.set(false);
            b.jit.set(JitSlot::None);
            for c in &b.chain {
                c.borrow_mut().take();
            }
        }
        self.blocks.clear();
        self.by_page.clear();
        self.code_pages.borrow_mut().pages.clear();
        self.jit.reset();
        self.flushes += 1;
    }
}
