# bits: 64
# 4-level paging: 4 KiB / 2 MiB / 1 GiB (only if CPUID.80000001H:EDX[26]; checked silently) pages,
# alias mappings, Accessed/Dirty bits at every level, #PF error codes and CR2 (not present at each
# level, write to read-only with CR0.WP=1 and 0, NX execute fault, reserved bit), INVLPG, CR3
# reload, non-canonical addresses raising #GP instead of #PF.
# expect-exit: 1
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"

.set P, 1
.set RW, 2
.set PS, 0x80
.set VBASE, 0x8000000000             # PML4[1]: all test mappings live here
# PTE/PDE helpers: table[index] = phys | flags
.macro SETE table, index, phys, flags
    mov $\phys, %eax
    or $\flags, %rax
    mov %rax, \table + 8 * \index(%rip)
.endm
.macro FLUSH
    mov %cr3, %rax
    mov %rax, %cr3
.endm
# ADFLAGS label, entry, mask: print "label=XX" with the entry's bits in mask (A=0x20, D=0x40).
.macro ADFLAGS label, entry, mask
    push %rax
    mov \entry(%rip), %rax
    and $\mask, %eax
    PUTS "\label="
    call puthex8
    call space
    pop %rax
.endm

.section .text
main64:
    call idt64_init
    PUTS "paging64\n"
    # --- build the tables: PML4[0] identity (first 2 MiB as 4 KiB pages, then 2 MiB pages up to
    # 128 MiB), PML4[1] the test area
    lea tables_start(%rip), %rdi
    mov $(tables_end - tables_start) / 8, %ecx
    xor %eax, %eax
    rep stosq
    SETE t_pml4, 0, t_pdpt0, P|RW
    SETE t_pdpt0, 0, t_pd0, P|RW
    SETE t_pd0, 0, t_pt0, P|RW
    lea t_pt0(%rip), %rdi
    mov $P|RW, %eax
    mov $512, %ecx
1:  mov %rax, (%rdi)
    add $0x1000, %rax
    add $8, %rdi
    loop 1b
    lea t_pd0+8(%rip), %rdi
    mov $0x200000|P|RW|PS, %eax
    mov $63, %ecx
1:  mov %rax, (%rdi)
    add $0x200000, %rax
    add $8, %rdi
    loop 1b
    SETE t_pml4, 1, t_pdpt1, P|RW
    SETE t_pdpt1, 0, t_pd1, P|RW
    SETE t_pd1, 0, t_pt1, P|RW
    SETE t_pt1, 0, pg_a, P|RW          # VBASE+0x0000 -> pg_a
    SETE t_pt1, 1, pg_a, P|RW          # VBASE+0x1000 -> pg_a (alias)
    SETE t_pt1, 2, pg_b, P             # VBASE+0x2000 -> pg_b read-only
                                       # VBASE+0x3000 not present
    SETE t_pt1, 5, pg_c, P|RW          # VBASE+0x5000 -> pg_c (CR3 reload test)
    SETE t_pt1, 6, pg_c, P|RW          # VBASE+0x6000 -> pg_c (INVLPG test)
    SETE t_pd1, 1, 0x400000, P|RW|PS   # VBASE+0x200000 -> 2 MiB page at 4 MiB
    SETE t_pd1, 2, t_pt2, P            # VBASE+0x400000: read-only at the PD level
    SETE t_pt2, 0, pg_d, P|RW
    lea pg_a(%rip), %rdi
    movq $0x1111, (%rdi)
    movq $0x2222, pg_b(%rip)
    movq $0x3333, pg_c(%rip)
    movq $0x4444, pg_d(%rip)
    movq $0x5555, pg_e(%rip)
    lea t_pml4(%rip), %rax
    mov %rax, %cr3
    mov %cr0, %rax
    or $0x10000, %eax                  # CR0.WP = 1
    mov %rax, %cr0
    PUTS "cr3 loaded\n"
    mov $VBASE, %r12

    # --- 4 KiB page: A/D at every level (bit 6 of non-leaf entries is ignored: not printed)
    PUTS "before: "
    ADFLAGS pml4, t_pml4+8, 0x20
    ADFLAGS pdpt, t_pdpt1, 0x20
    ADFLAGS pd, t_pd1, 0x20
    ADFLAGS pt, t_pt1, 0x60
    call newline
    mov $VBASE, %rbx
    mov (%rbx), %rax
    PUTHEX "4k read", %rax
    PUTS "after read: "
    ADFLAGS pml4, t_pml4+8, 0x20
    ADFLAGS pdpt, t_pdpt1, 0x20
    ADFLAGS pd, t_pd1, 0x20
    ADFLAGS pt, t_pt1, 0x60
    call newline
    movq $0xaaaa, 8(%rbx)
    PUTS "after write: "
    ADFLAGS pt, t_pt1, 0x60
    ADFLAGS alias, t_pt1+8, 0x60
    call newline
    # alias: the same frame through VBASE+0x1000
    mov 0x1008(%rbx), %rax
    PUTHEX "alias read", %rax
    movq $0xbbbb, 0x1010(%rbx)
    mov 0x10(%rbx), %rax
    PUTHEX "alias write seen", %rax
    PUTS "alias: "
    ADFLAGS pt, t_pt1, 0x60
    ADFLAGS alias, t_pt1+8, 0x60
    call newline

    # --- 2 MiB page
    mov $VBASE + 0x200000, %rbx
    movq $0x2020, 0x1008(%rbx)
    mov 0x401008, %rax                 # through the identity map
    PUTHEX "2m write seen", %rax
    ADFLAGS pd2m, t_pd1+8, 0x60
    call newline

    # --- 1 GiB page (only if supported; prints the same either way)
    mov $0x80000001, %eax
    cpuid
    bt $26, %edx
    jnc 2f
    SETE t_pdpt1, 1, 0, P|RW|PS        # VBASE+1 GiB -> phys 0, 1 GiB page
    FLUSH
    lea pg_e(%rip), %rbx
    mov $VBASE + 0x40000000, %rax
    add %rax, %rbx
    cmpq $0x5555, (%rbx)
    jne 1f
    movq $0x5556, (%rbx)
    cmpq $0x5556, pg_e(%rip)
    jne 1f
    mov t_pdpt1+8(%rip), %rax
    and $0x60, %eax
    cmp $0x60, %eax
    je 2f
1:  PUTS "1g FAIL\n"
    mov $3, %al
    call exit
2:  movq $0x5555, pg_e(%rip)
    PUTS "1g ok or unsupported\n"

    # --- #PF: not present at each level; CR2
    EXPECT_EXC 1f, 2f
1:  mov VBASE + 0x3000, %rax           # PTE not present, read
2:  EXPECT_EXC 1f, 2f
1:  movq $1, 0x3008(%r12)             # PTE not present, write
2:  EXPECT_EXC 1f, 2f
    mov $VBASE + 0x600000, %rbx
1:  mov (%rbx), %rax                   # PDE not present
2:  EXPECT_EXC 1f, 2f
    mov $VBASE + 0x80000000, %rbx
1:  movl $0, 4(%rbx)                   # PDPTE not present, write
2:  EXPECT_EXC 1f, 2f
    mov $0x10000000000, %rbx
1:  mov (%rbx), %al                    # PML4E not present
2:  EXPECT_EXC 1f, 2f
    mov $0xffff800000001000, %rbx
1:  mov (%rbx), %rax                   # canonical high half, not present: #PF
2:
    # --- #GP for non-canonical addresses (no #PF, CR2 not written)
    mov $0x1234, %rax
    mov %rax, %cr2
    EXPECT_EXC 1f, 2f
    mov $0x0000800000000000, %rbx
1:  mov (%rbx), %rax
2:  EXPECT_EXC 1f, 2f
    mov $0xfff0000000000000, %rbx
1:  movq $0, (%rbx)
2:  mov %cr2, %rax
    PUTHEX "cr2 after #GP", %rax

    # --- write protection
    EXPECT_EXC 1f, 2f
1:  movq $1, 0x2000(%r12)             # read-only PTE, WP=1
2:  EXPECT_EXC 1f, 2f
1:  movq $1, 0x400000(%r12)           # read-only at the PD level, WP=1
2:  mov VBASE + 0x2000, %rax
    PUTHEX "ro read", %rax
    ADFLAGS ro, t_pt1+16, 0x60
    call newline
    mov %cr0, %rax
    and $~0x10000, %eax                # WP = 0: supervisor writes ignore R/W
    mov %rax, %cr0
    movq $0x2223, 0x2000(%r12)
    movq $0x4445, 0x400000(%r12)
    mov %cr0, %rax
    or $0x10000, %eax
    mov %rax, %cr0
    PUTHEX "wp0 write pte", pg_b(%rip)
    PUTHEX "wp0 write pde", pg_d(%rip)
    ADFLAGS ro, t_pt1+16, 0x60
    call newline

    # --- NX: a code page executed, then marked XD (EFER.NXE=1) and executed again
    lea pg_f(%rip), %rdi
    lea code_tmpl(%rip), %rsi
    mov $code_tmpl_end - code_tmpl, %ecx
    rep movsb
    mov $MSR_EFER, %ecx
    rdmsr
    or $0x800, %eax                    # EFER.NXE
    wrmsr
    SETE t_pt1, 4, pg_f, P|RW
    FLUSH
    xor %eax, %eax
    mov $VBASE + 0x4000, %rdx
    lea 1f(%rip), %rbx
    jmp *%rdx
1:  PUTHEX32 "exec eax", %eax
    btsq $63, t_pt1+32(%rip)
    invlpg 0x4000(%r12)
    mov $VBASE + 0x4000, %rax
    mov %rax, exc_ref(%rip)
    lea 2f(%rip), %rax
    mov %rax, exc_resume(%rip)
    xor %eax, %eax
    lea 2f(%rip), %rbx
    jmp *%rdx
2:  PUTHEX32 "nx eax", %eax
    mov VBASE + 0x4000, %al            # data reads are fine
    PUTHEX8 "nx data read", %al
    # --- reserved bit: XD set while EFER.NXE=0
    mov $MSR_EFER, %ecx
    rdmsr
    and $~0x800, %eax
    wrmsr
    FLUSH
    # (only error code bit 3 RSVD is printed: the SDM and hardware also set P (err=9), which
    # QEMU 7.2 TCG does not)
    lea rsvd_pf(%rip), %rax
    mov %rax, exc_handlers+14*8(%rip)
    lea 2f(%rip), %rax
    mov %rax, exc_resume(%rip)
1:  mov VBASE + 0x4000, %al
2:  movq $0, exc_handlers+14*8(%rip)
    btrq $63, t_pt1+32(%rip)
    mov $MSR_EFER, %ecx
    rdmsr
    or $0x800, %eax
    wrmsr
    FLUSH

    # --- CR3 reload and INVLPG pick up changed entries
    mov VBASE + 0x5000, %rax           # fill the TLB: pg_c
    mov VBASE + 0x6000, %rax
    SETE t_pt1, 5, pg_e, P|RW
    SETE t_pt1, 6, pg_d, P|RW
    invlpg 0x6000(%r12)
    mov VBASE + 0x6000, %rax
    PUTHEX "after invlpg", %rax
    FLUSH
    mov VBASE + 0x5000, %rax
    PUTHEX "after cr3 reload", %rax
    # unmapping: a present entry cleared, then invlpg: #PF
    movq $0, t_pt1+48(%rip)
    invlpg 0x6000(%r12)
    EXPECT_EXC 1f, 2f
1:  mov VBASE + 0x6000, %rax
2:
    # A bits of the new mappings (fresh entries start clear)
    PUTS "remapped: "
    ADFLAGS pt5, t_pt1+40, 0x60
    call newline

    PUTS "done\n"
    mov $0, %al
    call exit

rsvd_pf:
    mov F_ERR(%rdi), %rax
    and $8, %eax
    PUTS "#PF rsvd: err&8="
    call puthex8
    PUTS " cr2="
    mov %cr2, %rax
    call puthex64
    call newline
    mov exc_resume(%rip), %rax
    mov %rax, F_RIP(%rdi)
    movq $0, exc_resume(%rip)
    ret

code_tmpl:
    mov $0x77, %eax
    jmp *%rbx
code_tmpl_end:

.section .bss
.align 4096
tables_start:
t_pml4: .skip 4096
t_pdpt0: .skip 4096
t_pd0: .skip 4096
t_pt0: .skip 4096
t_pdpt1: .skip 4096
t_pd1: .skip 4096
t_pt1: .skip 4096
t_pt2: .skip 4096
tables_end:
pg_a: .skip 4096
pg_b: .skip 4096
pg_c: .skip 4096
pg_d: .skip 4096
pg_e: .skip 4096
pg_f: .skip 4096
