//! Guest memory access in compiled code: the inline soft-TLB fast path and the cold slow path,
//! the same decisions as `interp::read_mem` / `write_mem`.
//!
//! ```text
//!     e = &cpu.tlb.entries[(lin >> 12) & (TLB_ENTRIES - 1)]
//!     if e.tag == ((lin + sz - 1) & !0xfff) | user:      (also rejects page crossings)
//!         host = lin + e.addend; access host           (fast)
//!     else:
//!         Env::read_slow/write_slow; fault check          (cold)
//! ```

use super::codegen::{state_flags, Gen};
use crate::cpu::CpuState;
use crate::tlb::{SoftTlb, TlbEntry, TLB_ENTRIES};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I16, I32, I64, I8};
use cranelift_codegen::ir::{BlockArg, InstBuilder, MemFlagsData, Value};
use std::mem::{offset_of, size_of};

const TLB: usize = offset_of!(CpuState, tlb) + offset_of!(SoftTlb, entries);
const READ_TAG: i32 = (TLB + offset_of!(TlbEntry, read_tag)) as i32;
const WRITE_TAG: i32 = (TLB + offset_of!(TlbEntry, write_tag)) as i32;
const ADDEND: i32 = (TLB + offset_of!(TlbEntry, addend)) as i32;
const _: () = assert!(size_of::<TlbEntry>().is_power_of_two() && TLB_ENTRIES.is_power_of_two());

/// Guest RAM through the host mapping: possibly unaligned; a fault there is a monitor bug.
fn guest_flags() -> MemFlagsData {
    MemFlagsData::new()
}

impl Gen<'_, '_> {
    /// Address of the TLB entry for `lin` (relative to the field offsets above) and whether
    /// the access hits. The tag is compared with the page of the access's *last* byte: an
    /// access crossing into the next page never matches the entry of its first page, so one
    /// compare checks both the tag and `(lin & 0xfff) + sz <= 0x1000` (as QEMU does).
    fn tlb_probe(&mut self, lin: Value, sz: u8, tag_off: i32) -> (Value, Value) {
        let page = self.b.ins().ushr_imm_u(lin, 12);
        let idx = self.and_k(page, (TLB_ENTRIES - 1) as u64);
        let scaled = self
            .b
            .ins()
            .ishl_imm_u(idx, size_of::<TlbEntry>().trailing_zeros() as i64);
        let entry = self.b.ins().iadd(self.cpu, scaled);
        let tag = self.b.ins().load(I64, state_flags(), entry, tag_off);
        let last = if sz > 1 {
            self.b.ins().iadd_imm_u(lin, sz as i64 - 1)
        } else {
            lin
        };
        let want = self.and_k(last, !0xfff);
        let want = if self.user {
            self.b.ins().bor_imm_u(want, 1)
        } else {
            want
        };
        let hit = self.b.ins().icmp(IntCC::Equal, tag, want);
        (entry, hit)
    }

    pub(super) fn load(&mut self, lin: Value, sz: u8, flags: u8) -> Value {
        let (entry, hit) = self.tlb_probe(lin, sz, READ_TAG);
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let join = self.b.create_block();
        let v = self.b.append_block_param(join, I64);
        self.b.set_cold_block(slow);
        self.b.ins().brif(hit, fast, &[], slow, &[]);

        self.b.switch_to_block(fast);
        let addend = self.b.ins().load(I64, state_flags(), entry, ADDEND);
        let host = self.b.ins().iadd(lin, addend);
        let x = match sz {
            1 => self.b.ins().uload8(I64, guest_flags(), host, 0),
            2 => self.b.ins().uload16(I64, guest_flags(), host, 0),
            4 => self.b.ins().uload32(guest_flags(), host, 0),
            _ => self.b.ins().load(I64, guest_flags(), host, 0),
        };
        self.b.ins().jump(join, &[BlockArg::Value(x)]);

        self.b.switch_to_block(slow);
        self.read_slow_call(lin, sz, flags, join);

        self.b.switch_to_block(join);
        v
    }

    pub(super) fn store(&mut self, lin: Value, v: Value, sz: u8, flags: u8) {
        let (entry, hit) = self.tlb_probe(lin, sz, WRITE_TAG);
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        let join = self.b.create_block();
        self.b.set_cold_block(slow);
        self.b.ins().brif(hit, fast, &[], slow, &[]);

        self.b.switch_to_block(fast);
        let addend = self.b.ins().load(I64, state_flags(), entry, ADDEND);
        let host = self.b.ins().iadd(lin, addend);
        match sz {
            1 => {
                let n = self.b.ins().ireduce(I8, v);
                self.b.ins().store(guest_flags(), n, host, 0)
            }
            2 => {
                let n = self.b.ins().ireduce(I16, v);
                self.b.ins().store(guest_flags(), n, host, 0)
            }
            4 => {
                let n = self.b.ins().ireduce(I32, v);
                self.b.ins().store(guest_flags(), n, host, 0)
            }
            _ => self.b.ins().store(guest_flags(), v, host, 0),
        };
        self.b.ins().jump(join, &[]);

        self.b.switch_to_block(slow);
        self.write_slow_call(lin, v, sz, flags, join);

        self.b.switch_to_block(join);
    }
}
