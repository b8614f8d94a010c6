# 2-level 32-bit paging: 4 KiB pages and 4 MiB pages (CR4.PSE), an alias mapping, Accessed and
# Dirty bits written by the CPU, #PF error codes and CR2 (not present, write to read-only with
# CR0.WP=1 and success with WP=0), INVLPG and CR3 reload flushing a changed PTE.
# Linear layout: 0-4 MiB identity (4 KiB pages), 4-8 MiB identity (one 4 MiB page),
# 8 MiB + n*4 KiB test pages (page table pt_test), 12 MiB: a 4 MiB page for A/D.
# expect-exit: 1
.include "multiboot.inc"
.include "serial32.inc"
.include "util32.inc"
.include "idt32.inc"

.set PG_P, 0x001
.set PG_RW, 0x002
.set PG_US, 0x004
.set PG_A, 0x020
.set PG_D, 0x040
.set PG_PS, 0x080
.set TEST, 0x800000                  # linear base of the test pages
.set PHYS, 0x600000                  # physical test pages (inside the 4-8 MiB identity map)

.section .text
.globl _start
_start:
    mov $stack_top, %esp
    call gdt_init
    call idt_init
    PUTS "paging32\n"
    # page table 0: identity 0-4 MiB
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    or $(PG_P | PG_RW), %eax
    mov %eax, pt0(,%ecx,4)
    inc %ecx
    cmp $1024, %ecx
    jb 1b
    movl $pt0 + (PG_P | PG_RW), pd
    movl $0x400000 + (PG_P | PG_RW | PG_PS), pd+4
    movl $pt_test + (PG_P | PG_RW), pd+8
    movl $0xC00000 + (PG_P | PG_RW | PG_PS), pd+12
    # test pages (pt_test index n -> linear TEST + n*4K)
    movl $PHYS + (PG_P | PG_RW), pt_test+0        # 0: alias A -> PHYS
    movl $PHYS + (PG_P | PG_RW), pt_test+4        # 1: alias B -> PHYS
    movl $PHYS + 0x1000 + (PG_P | PG_RW), pt_test+8   # 2: A/D test
    movl $0, pt_test+12                           # 3: not present
    movl $PHYS + 0x2000 + PG_P, pt_test+16        # 4: read-only
    movl $PHYS + 0x3000 + (PG_P | PG_RW), pt_test+20  # 5: invlpg test
    movl $PHYS + 0x5000 + (PG_P | PG_RW), pt_test+24  # 6: cr3 reload test
    # physical contents
    movl $0x11111111, PHYS + 0x2000
    movl $0xaaaaaaaa, PHYS + 0x3000
    movl $0xbbbbbbbb, PHYS + 0x4000
    movl $0xcccccccc, PHYS + 0x5000
    movl $0xdddddddd, PHYS + 0x6000
    # enable PSE and paging (WP on)
    mov %cr4, %eax
    or $0x10, %eax
    mov %eax, %cr4
    mov $pd, %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80010000, %eax             # PG | WP
    mov %eax, %cr0
    PUTS "paging on\n"

    # --- alias: write through one linear address, read through the other ---
    movl $0x12345678, TEST
    mov TEST + 0x1000, %eax
    PUTHEX "alias_read", %eax
    movl $0x9abcdef0, TEST + 0x1004
    mov TEST + 4, %eax
    PUTHEX "alias_read2", %eax
    mov PHYS, %eax
    PUTHEX "phys_read", %eax

    # --- Accessed / Dirty, 4 KiB page ---
    mov pt_test+8, %eax
    and $(PG_A | PG_D), %eax
    PUTHEX "pte_ad_initial", %eax
    mov TEST + 0x2000, %eax
    mov pt_test+8, %eax
    and $(PG_A | PG_D), %eax
    PUTHEX "pte_ad_after_read", %eax
    mov pd+8, %eax
    and $PG_A, %eax
    PUTHEX "pde_a_after_read", %eax
    movl $1, TEST + 0x2000
    mov pt_test+8, %eax
    and $(PG_A | PG_D), %eax
    PUTHEX "pte_ad_after_write", %eax
    mov pd+8, %eax
    and $(PG_A | PG_D), %eax         # the PDE of a page table has no D bit set by the CPU
    PUTHEX "pde_ad_after_write", %eax
    # --- Accessed / Dirty, 4 MiB page ---
    mov pd+12, %eax
    and $(PG_A | PG_D), %eax
    PUTHEX "pde4m_ad_initial", %eax
    mov 0xC00010, %eax
    mov pd+12, %eax
    and $(PG_A | PG_D), %eax
    PUTHEX "pde4m_ad_after_read", %eax
    movl $5, 0xC00010
    mov pd+12, %eax
    and $(PG_A | PG_D), %eax
    PUTHEX "pde4m_ad_after_write", %eax

    # --- #PF: not present ---
    EXPECT_FAULT 1f
pf_np_read:
    mov TEST + 0x3008, %eax
1:  REPORT "pf_np_read", pf_np_read
    PUTHEX "cr2", exc_cr2
    EXPECT_FAULT 1f
pf_np_write:
    movl $0, TEST + 0x300c
1:  REPORT "pf_np_write", pf_np_write
    PUTHEX "cr2", exc_cr2
    # (no read-modify-write case: hardware may report W=1 for the read of an RMW instruction)
    EXPECT_FAULT 1f
    mov $0x1400000, %ebx             # PDE 5 not present
pf_pde_np:
    movb $1, 0x123(%ebx)
1:  REPORT "pf_pde_np", pf_pde_np
    PUTHEX "cr2", exc_cr2
    # --- write to a read-only page from ring 0 ---
    mov TEST + 0x4000, %eax
    PUTHEX "ro_read", %eax
    EXPECT_FAULT 1f
pf_ro_wp1:
    movl $0x22222222, TEST + 0x4000
1:  REPORT "pf_ro_wp1", pf_ro_wp1
    PUTHEX "cr2", exc_cr2
    mov PHYS + 0x2000, %eax
    PUTHEX "ro_after_wp1", %eax
    mov %cr0, %eax
    and $~0x10000, %eax              # WP = 0: supervisor writes ignore R/W
    mov %eax, %cr0
    movl $0x33333333, TEST + 0x4000
    mov PHYS + 0x2000, %eax
    PUTHEX "ro_after_wp0", %eax
    mov pt_test+16, %eax
    and $(PG_A | PG_D | PG_RW), %eax
    PUTHEX "ro_pte_flags", %eax
    mov %cr0, %eax
    or $0x10000, %eax
    mov %eax, %cr0
    PUTHEX "exc_count", exc_count

    # --- INVLPG ---
    mov TEST + 0x5000, %eax          # fills the TLB with the old mapping
    PUTHEX "invlpg_old", %eax
    movl $PHYS + 0x4000 + (PG_P | PG_RW), pt_test+20
    mov TEST + 0x5000, %eax          # old or new: not printed (either is allowed)
    invlpg TEST + 0x5000
    mov TEST + 0x5000, %eax
    PUTHEX "invlpg_new", %eax
    # --- CR3 reload flushes non-global entries ---
    mov TEST + 0x6000, %eax
    PUTHEX "cr3_old", %eax
    movl $PHYS + 0x6000 + (PG_P | PG_RW), pt_test+24
    mov %cr3, %eax
    mov %eax, %cr3
    mov TEST + 0x6000, %eax
    PUTHEX "cr3_new", %eax
    # --- a PTE made not present, then invlpg: faults ---
    movl $0, pt_test+20
    invlpg TEST + 0x5000
    EXPECT_FAULT 1f
pf_after_invlpg:
    mov TEST + 0x5000, %eax
1:  REPORT "pf_after_invlpg", pf_after_invlpg
    PUTHEX "cr2", exc_cr2
    # --- paging off again: physical addresses ---
    mov %cr0, %eax
    and $~0x80000000, %eax
    mov %eax, %cr0
    mov PHYS, %eax
    PUTHEX "paging_off_read", %eax
    PUTS "done\n"
    mov $0, %al
    call exit

.section .bss
.align 4096
pd:      .skip 4096
pt0:     .skip 4096
pt_test: .skip 4096
    .skip 8192
stack_top:
