//! Runtime counters for `--stats`: callouts by kind, exceptions and interrupts by vector.

use btvisor_translator::classify::CalloutKind;
use std::collections::BTreeMap;

#[derive(Default, Debug)]
pub struct RuntimeStats {
    pub callouts: BTreeMap<CalloutKind, u64>,
    pub exceptions: BTreeMap<u8, u64>,
    pub software_interrupts: BTreeMap<u8, u64>,
    pub external_interrupts: u64,
    pub halts: u64,
}

impl RuntimeStats {
    pub fn note_callout(&mut self, kind: CalloutKind) {
        *self.callouts.entry(kind).or_default() += 1;
    }
    pub fn note_interrupt(&mut self, vector: u8, software: bool) {
        if software {
            *self.software_interrupts.entry(vector).or_default() += 1;
        } else {
            *self.exceptions.entry(vector).or_default() += 1;
        }
    }
}
