# bits: 64
# Nanobenchmarks in the style of Adams and Agesen, "A Comparison of Software and Hardware
# Techniques for x86 Virtualization" (ASPLOS 2006), section 6.1: each measures one operation
# that a VMM must intervene in (or a baseline), in guest cycles read with RDTSC.
# expect-exit: 1
#
# Build: tests/guests/build.sh benches/nanobench/nanobench64.S nanobench64.elf (not one of the
# exact-output kernels in tests/guests: the numbers vary). Run: btvisor run --kernel
# nanobench64.elf [--append "nano=NAME,NAME"] [--accel kvm]; `btvisor bench` runs it under each
# engine (cli/src/bench/nano.rs).
#
# Output, one line per operation, then a last line:
#     nanobench: rdtsc cycles per operation, median of 11 batches of 1000
#     nano <name> <cycles per operation, one decimal>
#     ...
#     nanobench done
# and the exit value 0 (btvisor's and QEMU's exit status 1). Each batch runs the operation 1000
# times between two RDTSCs; a warm-up batch (translation, TLB) comes first and is not counted.
# The operations, in order:
#   empty-loop    the loop alone (dec; jnz): the per-iteration overhead in every other figure
#   call-ret      call to a function that returns at once
#   syscall       from ring 3: SYSCALL to a handler that returns at once with SYSRETQ
#   in            IN from an emulated device port (the UART's line status register, 0x3FD)
#   cr8-write     MOV to CR8 (the task-priority register), value 0
#   page-fault    a load from a not-present 4 KiB page, ring 0; the #PF handler reads CR2 and
#                 skips the load
#   divide-fault  DIV by zero, ring 0; the #DE handler skips the instruction
#   pte-write     a store into a live page table (a 4 KiB page's PTE, flipping an ignored bit),
#                 no INVLPG
#   user-page-fault      a load from a not-present user page, ring 3; the #PF handler (CPL 3
#                 fault) checks CR2, skips the load and returns with IRETQ
#   user-touch-mapped    ring 3: SYSCALL to a handler that does INVLPG of a present user page
#                 and SYSRETQs, then one load from that page (the page is mapped in the guest
#                 tables throughout; an engine that shadows them refills it). Includes a syscall.
#   as-switch     ring 3: SYSCALL to a handler that loads CR3 with the other of two address
#                 spaces and SYSRETQs into it (both map the kernel, code and stacks alike, each
#                 its own data page at AS_VA); the loop goes on there, so operations alternate
#   user-compute  ring 3: 16 dependent register add/imul/xor, no traps (a baseline for code
#                 that runs at the host CPU's speed)
# A multiboot command line with a word "nano=NAME,NAME,..." runs only those operations (the
# other words are ignored: QEMU puts the image's file name first), so a VMM that stops on one
# operation can run the rest in a new VM.
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"

.set ITERS, 1000
.set BATCHES, 11
.set MSR_STAR, 0xC0000081
.set MSR_LSTAR, 0xC0000082
.set MSR_FMASK, 0xC0000084
.set BENCH_VA, 0x40000000              # PDPT[1]: a page table of 4 KiB pages (bench_pt)
.set PF_VA, BENCH_VA                   # bench_pt[0]: not present
.set PTE_VA, BENCH_VA + 0x1000         # bench_pt[1]: present, its PTE is the one written
.set UART_LSR, 0x3FD
# The ring-3 operations' pages, in PDPT[2] of their own tables (user_pd -> user_pt, all U):
.set USER_VA, 0x80000000
.set UPF_VA, USER_VA                   # user_pt[0]: not present (user-page-fault)
.set UTM_VA, USER_VA + 0x1000          # user_pt[1]: user_page (user-touch-mapped)
.set AS_VA, USER_VA + 0x2000           # user_pt[2]: as_page_a; in the second space as_page_b
.set AS_MARK_A, 0xA                    # what each space's data page holds (as-switch checks)
.set AS_MARK_B, 0xB
# System calls (%eax): 0 return at once, 1 back to run_item, 2 INVLPG UTM_VA, 3 switch spaces
.set SYS_INVLPG, 2
.set SYS_SWITCH, 3
.if ITERS % 2
.error "as-switch needs an even ITERS: each batch must end in the space it began in"
.endif

# ITEM name, fn[, user]: run the operation loop fn (ITERS iterations in %r12) unless the
# command line leaves it out, and print its line. user=1 runs the measurement in ring 3.
.macro ITEM name, fn, user=0
    .pushsection .rodata
9100: .asciz "\name"
    .popsection
    lea 9100b(%rip), %rdi
    lea \fn(%rip), %rbx
    .if \user
    mov $1, %eax
    .else
    xor %eax, %eax
    .endif
    call run_item
.endm

.section .text
main64:
    call idt64_init
    mov $0xff, %al                     # mask both PICs: nothing interrupts a batch
    out %al, $0x21
    out %al, $0xa1
    call find_selection
    # The first 2 MiB (this image: code, data, the user stack) user-accessible, for ring 3.
    orq $4, boot_pml4(%rip)
    orq $4, boot_pdpt(%rip)
    orq $4, boot_pd(%rip)
    # A 4 KiB page table at BENCH_VA: entry 0 not present (page-fault), entry 1 a data page
    # (pte-write).
    lea bench_pd(%rip), %rax
    or $3, %rax                        # P RW
    mov %rax, boot_pdpt+8(%rip)
    lea bench_pt(%rip), %rax
    or $3, %rax
    mov %rax, bench_pd(%rip)
    lea bench_page(%rip), %rax
    or $3, %rax
    mov %rax, bench_pt+8(%rip)
    # The ring-3 operations' tables at USER_VA (PDPT[2], user-accessible at every level):
    # user_pt[0] not present, [1] user_page, [2] as_page_a.
    lea user_tables(%rip), %rdi        # zero user_pd ... as_pt (do not rely on a zeroed .bss)
    mov $(USER_TABLE_PAGES * 4096 / 8), %ecx
    xor %eax, %eax
    rep stosq
    lea user_pd(%rip), %rax
    or $7, %rax                        # P RW U
    mov %rax, boot_pdpt + 2 * 8(%rip)
    lea user_pt(%rip), %rax
    or $7, %rax
    mov %rax, user_pd(%rip)
    lea user_page(%rip), %rax
    or $7, %rax
    mov %rax, user_pt + 1 * 8(%rip)
    lea as_page_a(%rip), %rax
    or $7, %rax
    mov %rax, user_pt + 2 * 8(%rip)
    movq $AS_MARK_A, as_page_a(%rip)
    # The second address space (as-switch): as_pml4 -> as_pdpt, a copy of boot_pdpt (the
    # kernel, the image, BENCH_VA alike) but for PDPT[2]: as_pd -> as_pt, whose entry 2 maps
    # as_page_b at AS_VA.
    lea boot_pdpt(%rip), %rsi
    lea as_pdpt(%rip), %rdi
    mov $512, %ecx
    rep movsq
    lea as_pdpt(%rip), %rax
    or $7, %rax
    mov %rax, as_pml4(%rip)
    lea as_pd(%rip), %rax
    or $7, %rax
    mov %rax, as_pdpt + 2 * 8(%rip)
    lea as_pt(%rip), %rax
    or $7, %rax
    mov %rax, as_pd(%rip)
    lea as_page_b(%rip), %rax
    or $7, %rax
    mov %rax, as_pt + 2 * 8(%rip)
    movq $AS_MARK_B, as_page_b(%rip)
    lea as_pml4(%rip), %rax            # CR3 of one space ^ CR3 of the other
    lea boot_pml4(%rip), %rdx
    xor %rdx, %rax
    mov %rax, as_cr3_xor(%rip)
    mov %cr3, %rax
    mov %rax, %cr3
    # TSS64 rsp0 (nothing is expected to trap from ring 3 but the SYSCALLs and
    # user-page-fault's #PF; a stray one lands on this stack and the default handler reports it)
    lea kstack_top(%rip), %rax
    mov %rax, tss64+4(%rip)
    movw $104, tss64+102(%rip)
    mov $TSS_SEL, %edi
    lea tss64(%rip), %rsi
    mov $103, %edx
    mov $0x89, %ecx
    call gdt_set_sys
    mov $TSS_SEL, %ax
    ltr %ax
    # SYSCALL / SYSRET (as in tests/guests/user64.S)
    mov $MSR_EFER, %ecx
    rdmsr
    or $1, %eax                        # SCE
    wrmsr
    mov $MSR_STAR, %ecx
    xor %eax, %eax
    mov $((UCODE32|3) << 16) | KCODE64, %edx
    wrmsr
    mov $MSR_LSTAR, %ecx
    lea syscall_entry(%rip), %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
    mov $MSR_FMASK, %ecx
    mov $0x700, %eax                   # TF IF DF
    xor %edx, %edx
    wrmsr
    # Fast #DE and #PF handlers for the two fault loops (others go to the default stubs).
    xor %edi, %edi
    lea de_fast(%rip), %rsi
    mov $0x8E00, %edx
    call idt_set_gate
    mov $14, %edi
    lea pf_fast(%rip), %rsi
    call idt_set_gate
    movl (PTE_VA), %eax                # bench_pt is in use before pte-write writes to it

    PUTS "nanobench: rdtsc cycles per operation, median of 11 batches of 1000\n"
    ITEM "empty-loop", op_empty
    ITEM "call-ret", op_callret
    ITEM "syscall", op_syscall, 1
    ITEM "in", op_in
    ITEM "cr8-write", op_cr8
    ITEM "page-fault", op_pf
    ITEM "divide-fault", op_de
    ITEM "pte-write", op_pte
    ITEM "user-page-fault", op_upf, 1
    ITEM "user-touch-mapped", op_utm, 1
    ITEM "as-switch", op_as, 1
    ITEM "user-compute", op_ucompute, 1
    PUTS "nanobench done\n"
    xor %eax, %eax
    ret

# ---------------------------------------------------------------- the operation loops
# Each runs %r12 iterations; may clobber %rax, %rcx, %rdx, %rsi, %r11.
op_empty:
1:  dec %r12
    jnz 1b
    ret

op_callret:
1:  call nop_fn
    dec %r12
    jnz 1b
    ret
nop_fn:
    ret

op_syscall:                            # ring 3
1:  xor %eax, %eax
    syscall
    dec %r12
    jnz 1b
    ret

op_in:
    mov $UART_LSR, %edx
1:  in %dx, %al
    dec %r12
    jnz 1b
    ret

op_cr8:
    xor %eax, %eax
1:  mov %rax, %cr8
    dec %r12
    jnz 1b
    ret

op_pf:
    mov $PF_VA, %esi
1:
pf_insn:
    mov (%rsi), %eax
pf_insn_end:
    dec %r12
    jnz 1b
    ret

op_de:
    xor %ecx, %ecx
1:  mov $1, %eax
    xor %edx, %edx
de_insn:
    div %ecx
de_insn_end:
    dec %r12
    jnz 1b
    ret

op_pte:
    lea bench_pt+8(%rip), %rsi
    mov (%rsi), %rax
1:  xor $0x200, %rax                   # bit 9: ignored by the MMU (SDM vol. 3A, 4.5)
    mov %rax, (%rsi)
    dec %r12
    jnz 1b
    ret

op_upf:                                # ring 3
    mov $UPF_VA, %esi
1:
upf_insn:
    mov (%rsi), %eax
upf_insn_end:
    dec %r12
    jnz 1b
    ret

op_utm:                                # ring 3
    mov $UTM_VA, %esi
1:  mov $SYS_INVLPG, %eax
    syscall
    mov (%rsi), %eax
    dec %r12
    jnz 1b
    ret

# as-switch: each SYSCALL comes back in the other space, at the same place with the same
# registers and stack (all in the image, mapped alike in both); after %r12 - 1 (odd) switches
# the second space's data page must be at AS_VA, after the last one the first's again. The two
# loads per batch are not switches (0.2 % of the operations).
op_as:                                 # ring 3; %r12 even
    mov $AS_VA, %esi
    dec %r12
1:  mov $SYS_SWITCH, %eax
    syscall
    dec %r12
    jnz 1b
    cmpq $AS_MARK_B, (%rsi)
    jne 8f
    mov $SYS_SWITCH, %eax
    syscall
    cmpq $AS_MARK_A, (%rsi)
    jne 8f
    ret
8:  ud2                                # the wrong page at AS_VA: #UD, reported by the stub

op_ucompute:                           # ring 3: one dependent chain of 16 per operation
    mov $1, %eax
    mov $0x9E3779B97F4A7C15, %rdx
    mov $0x632BE59BD9B4E019, %rsi
1:  .rept 4
    imul %rdx, %rax
    add %rsi, %rax
    xor %rdx, %rax
    add %rax, %rax
    .endr
    dec %r12
    jnz 1b
    ret

# ---------------------------------------------------------------- handlers
syscall_entry:                         # %eax 0: return at once; 1: back to run_item;
    test %eax, %eax                    # SYS_INVLPG, SYS_SWITCH: see above
    jnz 1f
    sysretq
1:  cmp $SYS_INVLPG, %eax
    je 2f
    cmp $SYS_SWITCH, %eax
    je 3f
    mov kernel_rsp(%rip), %rsp
    jmp user_done
2:  mov $UTM_VA, %eax                  # drop the TLB entry of a page that stays mapped
    invlpg (%rax)
    sysretq
3:  mov %cr3, %rax                     # into the other address space
    xor as_cr3_xor(%rip), %rax
    mov %rax, %cr3
    sysretq

# #PF: the frame is error code, RIP, CS, RFLAGS, RSP, SS (SDM vol. 3A, 6.14.1).
pf_fast:
    push %rax
    lea pf_insn(%rip), %rax
    cmp %rax, 16(%rsp)
    jne 1f
    mov %cr2, %rax
    pop %rax
    add $8, %rsp
    addq $(pf_insn_end - pf_insn), (%rsp)
    iretq
1:  lea upf_insn(%rip), %rax           # user-page-fault: from ring 3, at UPF_VA
    cmp %rax, 16(%rsp)
    jne 2f
    testb $3, 24(%rsp)                 # CS.RPL: a CPL 3 fault
    jz 2f
    mov %cr2, %rax
    cmp upf_va(%rip), %rax             # (UPF_VA does not fit a sign-extended imm32)
    jne 2f
    pop %rax
    add $8, %rsp
    addq $(upf_insn_end - upf_insn), (%rsp)
    iretq
2:  pop %rax
    jmp exc_stubs + 14 * 16

de_fast:
    push %rax
    lea de_insn(%rip), %rax
    cmp %rax, 8(%rsp)
    jne 1f
    pop %rax
    addq $(de_insn_end - de_insn), (%rsp)
    iretq
1:  pop %rax
    jmp exc_stubs

# ---------------------------------------------------------------- measurement
# run_item: %rdi = name, %rbx = operation loop, %eax = 1 to measure in ring 3.
run_item:
    push %rax
    call selected
    test %eax, %eax
    pop %rax
    jz 9f
    push %rdi
    test %eax, %eax
    jnz 1f
    call measure
    jmp 2f
1:  call measure_in_user
2:  pop %rdi
    call report
9:  ret

# measure: a warm-up batch, then BATCHES batches of ITERS iterations of (%rbx) into results[].
# Runs in ring 0 or ring 3 (everything it touches is user-accessible).
measure:
    mov $ITERS, %r12
    call *%rbx
    xor %r13d, %r13d
1:  rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r14
    mov $ITERS, %r12
    call *%rbx
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r14, %rax
    lea results(%rip), %rcx
    mov %rax, (%rcx,%r13,8)
    inc %r13
    cmp $BATCHES, %r13
    jb 1b
    ret

# measure_in_user: measure in ring 3 (SYSRETQ there, SYSCALL with %eax = 1 back).
measure_in_user:
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, kernel_rsp(%rip)
    lea user_entry(%rip), %rcx
    mov $0x2, %r11d                    # IF=0 in ring 3 too
    lea ustack_top(%rip), %rsp
    sysretq
user_entry:
    call measure
    mov $1, %eax
    syscall
user_done:
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    ret

# report: %rdi = name; prints "nano NAME C.D" with the median batch / ITERS.
report:
    lea results(%rip), %rsi            # insertion sort of results[0..BATCHES)
    mov $1, %ecx
1:  cmp $BATCHES, %ecx
    jae 4f
    mov (%rsi,%rcx,8), %rax
    mov %ecx, %edx
2:  test %edx, %edx
    jz 3f
    mov -8(%rsi,%rdx,8), %r8
    cmp %rax, %r8
    jbe 3f
    mov %r8, (%rsi,%rdx,8)
    dec %edx
    jmp 2b
3:  mov %rax, (%rsi,%rdx,8)
    inc %ecx
    jmp 1b
4:  PUTS "nano "
    mov %rdi, %rsi
    call puts
    call space
    mov results + 8 * (BATCHES / 2)(%rip), %rax
    imul $10, %rax
    xor %edx, %edx
    mov $ITERS, %ecx
    div %rcx                           # tenths of a cycle per operation
    xor %edx, %edx
    mov $10, %ecx
    div %rcx
    call putdec64
    mov $'.', %al
    call putc
    mov %edx, %eax
    call putdec64
    call newline
    ret

# putdec64: print %rax in decimal. Preserves all registers.
putdec64:
    push %rax
    push %rcx
    push %rdx
    push %rbx
    mov $10, %ebx
    xor %ecx, %ecx
1:  xor %edx, %edx
    div %rbx
    push %rdx
    inc %ecx
    test %rax, %rax
    jnz 1b
2:  pop %rax
    add $'0', %al
    call putc
    dec %ecx
    jnz 2b
    pop %rbx
    pop %rdx
    pop %rcx
    pop %rax
    ret

# ---------------------------------------------------------------- command line
# find_selection: sel_list = the text after "nano=" in the multiboot command line (a word of
# its own), or 0 when there is none (run everything).
find_selection:
    movq $0, sel_list(%rip)
    mov mb_info(%rip), %esi
    test %esi, %esi
    jz 9f
    testl $4, (%rsi)                   # flags bit 2: cmdline valid (Multiboot 0.6.96, 3.3)
    jz 9f
    mov 16(%rsi), %esi
    test %esi, %esi
    jz 9f
    mov $' ', %dl                      # the character before the current one
1:  movb (%rsi), %al
    test %al, %al
    jz 9f
    cmp $' ', %dl
    jne 2f
    cmpl $0x6f6e616e, (%rsi)           # "nano"
    jne 2f
    cmpb $'=', 4(%rsi)
    jne 2f
    lea 5(%rsi), %rax
    mov %rax, sel_list(%rip)
    ret
2:  mov %al, %dl
    inc %rsi
    jmp 1b
9:  ret

# selected: %rdi = NUL-terminated name; %eax = 1 if sel_list is 0 or names it.
selected:
    push %rsi
    push %rcx
    push %rdx
    mov sel_list(%rip), %rsi
    test %rsi, %rsi
    jz 8f
1:  mov %rdi, %rcx                     # an entry of the list starts at %rsi
2:  movzbl (%rsi), %eax
    movzbl (%rcx), %edx
    cmp $',', %al
    je 3f
    cmp $' ', %al
    je 3f
    test %al, %al
    je 3f
    cmp %al, %dl                       # not at the entry's end: the name must go on alike
    jne 5f
    inc %rsi
    inc %rcx
    jmp 2b
3:  test %dl, %dl                      # at the entry's end: a match if the name ends too
    jz 8f
    jmp 6f
5:  movzbl (%rsi), %eax                # skip the rest of this entry
    cmp $',', %al
    je 6f
    cmp $' ', %al
    je 7f
    test %al, %al
    je 7f
    inc %rsi
    jmp 5b
6:  cmpb $',', (%rsi)                  # on to the next entry, if any
    jne 7f
    inc %rsi
    jmp 1b
7:  xor %eax, %eax
    jmp 9f
8:  mov $1, %eax
9:  pop %rdx
    pop %rcx
    pop %rsi
    ret

.section .data
.align 16
tss64: .skip 104
.align 8
kernel_rsp: .quad 0
sel_list: .quad 0
upf_va: .quad UPF_VA
as_cr3_xor: .quad 0

.section .bss
.align 4096
bench_pd: .skip 4096
bench_pt: .skip 4096
bench_page: .skip 4096
user_tables:                           # zeroed by main64
user_pd: .skip 4096
user_pt: .skip 4096
as_pml4: .skip 4096
as_pdpt: .skip 4096
as_pd: .skip 4096
as_pt: .skip 4096
.set USER_TABLE_PAGES, (. - user_tables) / 4096
user_page: .skip 4096
as_page_a: .skip 4096
as_page_b: .skip 4096
.align 64
results: .skip 8 * BATCHES
.align 16
    .skip 4096
kstack_top:
    .skip 4096
ustack_top:
