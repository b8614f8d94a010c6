# bits: 64
# expect-exit: 1
# Guest user tasks in 64-bit ring 3 (the test for native user execution: ring-3 code may run on
# the host CPU while the kernel is translated). The user code lives in its own page-aligned
# section, mapped U=1 read-only at its identity address by 4 KiB pages; the rest of the image is
# supervisor. User data lives at 0x40000000 (PML4[0] PDPT[1]) in per-address-space page tables
# with U=1 at every level. Sections (1-4 and 6 entered with sysretq and ended by a syscall):
#  1. compute: 2,000,000 xorshift64 / add / imul iterations in ring 3, checksum printed.
#  2. 100,000 SYSCALLs and 100,000 int $0x80 (DPL-3 gate), each returning a kernel counter that
#     the user checks against the previous value + 1 (RCX/R11 clobbered, other GPRs kept).
#  3. demand paging: 64 not-present user pages written (32 by a mov loop, 32 by one rep stosq
#     faulting mid-instruction); #PF err=6 maps a zeroed pool frame U/RW (no flush) and retries.
#  4. copy-on-write: 16 present read-only user pages read, then written: #PF err=7 copies the
#     frame, maps the copy RW, invlpg (even pages) or CR3 reload (odd) and retries; the kernel
#     checks that the old frames are unchanged and the copies hold the writes.
#  5. two tasks with their own PML4s (the same VA 0x40000000 on different frames) spin in ring 3
#     checking xmm0-15, MXCSR, the x87 control word and st0, 10 GPRs and their stack, preempted
#     by PIT channel 0 (1 kHz) -> 8259 IRQ0 -> vector 0x20; the timer handler saves the frame,
#     FXSAVE64s, switches CR3, FXRSTOR64s and iretqs into the other task; the tasks exit by
#     syscall once the switch count (in a user read-only shared page) reaches 20.
#  6. user faults reported with vector, error code and CPL, then skipped: hlt, cli (#GP(0)),
#     ud2 (#UD), int3 through a DPL-3 gate (#BP, RIP after the int3), div by zero (#DE).
# No printed value depends on timing.
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"
.include "ring3_64.inc"

.set SYS_PUTS, 1                       # rdi = string
.set SYS_PUTHEX, 2                     # rdi = value, 16 hex digits and a newline
.set SYS_PUTDEC, 3                     # rdi = value, decimal and a newline
.set SYS_DONE, 4                       # back to the kernel's main flow
.set SYS_COUNT, 5                      # returns ++syscall counter
.set SYS_COUNT80, 6                    # returns ++int 0x80 counter
.set SYS_EXPECT, 7                     # rdi = faulting instruction, rsi = resume address
.set SYS_TEXIT, 8                      # task exit (section 5), rdi = error bits

# user pages: the ring3_64.inc layout (USER_BASE, PRIV_VA, SHARED_VA, USTACK_TOP, the frame pool)
.set COW_VA, USER_BASE + 0x20000
.set COW_PAGES, 16
.set COW_OFF, 0x800                    # page i gets COW_VAL + i at COW_OFF + 8 * i
.set COW_VAL, 0x7EED0000
.set DEMAND_VA, USER_BASE + 0x100000
.set DEMAND_PAGES, 64

.set N_COMPUTE, 2000000
.set N_CALLS, 100000
.set MIN_SWITCHES, 20
.set PIT_COUNT, 1193                   # 1 kHz

# private page (section 5): PV_ID .. PV_ST0OUT from ring3_64.inc, then
.set PV_SMARK, 48
.set PV_GPR, 0x40                      # 10 qwords: rbx rbp r8..r15
.set PV_XMM_PAT, 0x100                 # 16 x 16 bytes
.set PV_XMM_OUT, 0x200
.set ERR_XMM, 1
.set ERR_MXCSR, 2
.set ERR_GPR, 4
.set ERR_STACK, 8
.set ERR_X87, 16

# task control blocks
.set TCB_FX, 0                         # 512 bytes, 16-aligned
.set TCB_FRAME, 512                    # 22 qwords, the idt64.inc frame layout
.set TCB_CR3, 688
.set TCB_ALIVE, 696
.set TCB_RESULT, 704
.set TCB_PRIV, 712                     # physical address of the private page
.set TCB_SIZE, 1024
.set TCB_SHIFT, 10
# the tasks' FPU / SSE state (ring3_64.inc hooks): FXSAVE64 / FXRSTOR64 areas, initially the
# state after FNINIT with MXCSR 0x1f80
.macro TASK_STATE_INIT
    fninit
    ldmxcsr mxcsr_default(%rip)
    fxsave64 TCB_FX(%rbx)
.endm
.macro TASK_STATE_SAVE tcb
    fxsave64 TCB_FX(\tcb)
.endm
.macro TASK_STATE_LOAD tcb
    fxrstor64 TCB_FX(\tcb)
.endm

# ---------------------------------------------------------------- user-side macros (ring 3)
# (UPUTS, UPUTHEX, UPUTDEC, UDONE: ring3_64.inc)
.macro UEXPECT at, resume
    lea \at(%rip), %rdi
    lea \resume(%rip), %rsi
    mov $SYS_EXPECT, %eax
    syscall
.endm

.section .text
main64:
    call idt64_init
    PIC_INIT
    PUTS "native64\n"
    # SSE on: CR0.MP|NE, EM=TS=0, CR4.OSFXSR|OSXMMEXCPT
    mov %cr0, %rax
    and $~0xC, %rax
    or $0x22, %rax
    mov %rax, %cr0
    mov %cr4, %rax
    or $0x600, %rax
    mov %rax, %cr4
    fninit
    ldmxcsr mxcsr_default(%rip)
    TSS64_INIT
    # gates and handlers
    mov $0x80, %edi
    mov $0xEE00, %edx                  # DPL 3 interrupt gate
    call idt_set_attr
    lea int80_handler(%rip), %rax
    mov %rax, exc_handlers+0x80*8(%rip)
    lea timer_handler(%rip), %rax
    mov %rax, exc_handlers+0x20*8(%rip)
    lea pf_handler(%rip), %rax
    mov %rax, exc_handlers+14*8(%rip)
    lea user_fault(%rip), %rax
    mov %rax, exc_handlers+0*8(%rip)
    mov %rax, exc_handlers+3*8(%rip)
    mov %rax, exc_handlers+6*8(%rip)
    mov %rax, exc_handlers+13*8(%rip)
    SYSCALL_INIT
    call build_tables
    lea pml4_a(%rip), %rax
    mov %rax, %cr3

    # ---- 1. compute
    PUTS "-- compute\n"
    lea user_compute(%rip), %rdi
    call run_user

    # ---- 2. syscalls
    PUTS "-- syscalls\n"
    lea user_syscalls(%rip), %rdi
    call run_user
    PUTS "kernel counters: syscall="
    mov sc_counter(%rip), %rax
    call putdec64
    PUTS " int80="
    mov int80_counter(%rip), %rax
    call putdec64
    call newline

    # ---- 3. demand paging
    PUTS "-- demand paging\n"
    lea user_demand(%rip), %rdi
    call run_user
    PUTS "demand faults="
    mov demand_faults(%rip), %rax
    call putdec64
    cmpq $0, demand_bad(%rip)
    jne 1f
    PUTS ", all err=6 on not-present PTEs\n"
    jmp 2f
1:  PUTS ", BAD faults="
    mov demand_bad(%rip), %rax
    call putdec64
    call newline
2:
    # ---- 4. copy-on-write
    PUTS "-- copy-on-write\n"
    call cow_setup
    lea user_cow(%rip), %rdi
    call run_user
    call cow_check

    # ---- 5. two address spaces, timer preemption
    PUTS "-- timer task switch\n"
    call run_tasks
    call tasks_report

    # ---- 6. user faults
    PUTS "-- user faults\n"
    mov $3, %edi
    mov $0xEE00, %edx                  # #BP through a DPL-3 gate
    call idt_set_attr
    lea user_faults(%rip), %rdi
    call run_user

    PUTS "done\n"
    mov $0, %al
    ret

# ---------------------------------------------------------------- kernel helpers
# (putdec64, back_to_kernel: ring3_64.inc; the frame pool, address spaces and tasks below)
RING3_TASKS

# run_user: run %rdi in ring 3 (address space A, its stack) until it makes SYS_DONE.
run_user:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, kctx_rsp(%rip)
    mov %rdi, %rcx
    mov $0x202, %r11d
    mov $USTACK_TOP, %rsp
    sysretq                            # SYS_DONE returns through back_to_kernel

# ---------------------------------------------------------------- syscalls
syscall_entry:
    mov %rsp, sc_user_rsp(%rip)
    lea sc_stack_top(%rip), %rsp
    push %rcx
    push %r11
    push %rdi
    push %rsi
    push %rdx
    push %r8
    push %r9
    push %r10
    call sys_dispatch
    pop %r10
    pop %r9
    pop %r8
    pop %rdx
    pop %rsi
    pop %rdi
    pop %r11
    pop %rcx
    mov sc_user_rsp(%rip), %rsp
    sysretq

int80_handler:
    push %rdi
    mov F_RAX(%rdi), %rax
    mov F_RSI(%rdi), %rsi
    mov F_RDI(%rdi), %rdi
    call sys_dispatch
    pop %rdi
    mov %rax, F_RAX(%rdi)
    ret

# sys_dispatch: %eax = number, %rdi / %rsi = arguments; result in %rax. May clobber rcx, rdx,
# rsi, rdi, r8..r11; keeps rbx, rbp, r12..r15.
sys_dispatch:
    cmp $SYS_COUNT, %eax
    jne 1f
    incq sc_counter(%rip)
    mov sc_counter(%rip), %rax
    ret
1:  cmp $SYS_COUNT80, %eax
    jne 1f
    incq int80_counter(%rip)
    mov int80_counter(%rip), %rax
    ret
1:  cmp $SYS_PUTS, %eax
    jne 1f
    mov %rdi, %rsi
    call puts
    ret
1:  cmp $SYS_PUTHEX, %eax
    jne 1f
    mov %rdi, %rax
    call puthex64
    call newline
    ret
1:  cmp $SYS_PUTDEC, %eax
    jne 1f
    mov %rdi, %rax
    call putdec64
    call newline
    ret
1:  cmp $SYS_DONE, %eax
    je back_to_kernel
    cmp $SYS_EXPECT, %eax
    jne 1f
    mov %rdi, exc_ref(%rip)
    mov %rsi, exc_resume(%rip)
    ret
1:  cmp $SYS_TEXIT, %eax
    je sys_texit
    PUTS "bad syscall\n"
    mov $4, %al
    call exit

# ---------------------------------------------------------------- faults
# user_fault: report a ring-3 fault (exc #XX err=.. rip=ref+..), its CPL, and resume at the
# address given by SYS_EXPECT.
user_fault:
    call exc_report
    PUTS "  from cpl="
    mov F_CS(%rdi), %rax
    and $3, %eax
    call puthex8
    call newline
    mov exc_resume(%rip), %rax
    test %rax, %rax
    jz 1f
    mov %rax, F_RIP(%rdi)
    movq $0, exc_resume(%rip)
    movq $0, exc_ref(%rip)
    ret
1:  PUTS "unexpected\n"
    mov $5, %al
    call exit

pf_handler:
    testb $3, F_CS(%rdi)
    jz user_fault                      # from ring 0: reported as unexpected
    mov %cr2, %rax
    mov $DEMAND_VA, %edx
    cmp %rdx, %rax
    jb 1f
    add $DEMAND_PAGES * 4096, %rdx
    cmp %rdx, %rax
    jb pf_demand
1:  mov $COW_VA, %edx
    cmp %rdx, %rax
    jb user_fault
    add $COW_PAGES * 4096, %rdx
    cmp %rdx, %rax
    jb pf_cow
    jmp user_fault

# pf_demand: map a zeroed frame U/RW at the not-present page and retry (no TLB flush: a
# not-present translation is never cached).
pf_demand:
    incq demand_faults(%rip)
    sub $USER_BASE, %rax
    shr $12, %rax
    lea pt_user_a(%rip), %rsi
    lea (%rsi,%rax,8), %rsi
    cmpq $6, F_ERR(%rdi)
    jne 1f
    testb $PG_P, (%rsi)
    jz 2f
1:  incq demand_bad(%rip)
    cmpq $DEMAND_PAGES * 2, demand_faults(%rip)
    jb 2f
    PUTS "demand paging: fault loop\n"
    mov $7, %al
    call exit
2:  call alloc_frame
    or $(PG_P|PG_RW|PG_U), %rax
    mov %rax, (%rsi)
    ret

# pf_cow: copy the read-only frame to a new one, map that RW, flush, retry.
pf_cow:
    incq cow_faults(%rip)
    mov %rax, %r9                      # cr2
    sub $COW_VA, %rax
    shr $12, %rax
    mov %rax, %r8                      # page index
    lea pt_user_a+(COW_VA-USER_BASE)/512(%rip), %rsi
    lea (%rsi,%rax,8), %r10            # PTE
    cmpq $7, F_ERR(%rdi)
    jne 1f
    mov (%r10), %rax
    and $(PG_P|PG_RW|PG_U), %eax
    cmp $(PG_P|PG_U), %eax
    je 2f
1:  incq cow_bad(%rip)
    cmpq $COW_PAGES * 2, cow_faults(%rip)
    jb 3f
    PUTS "copy-on-write: fault loop\n"
    mov $8, %al
    call exit
3:  orq $PG_RW, (%r10)                 # (do what it takes to make progress)
    jmp 4f
2:  call alloc_frame
    lea cow_new(%rip), %rcx
    mov %rax, (%rcx,%r8,8)
    push %rdi
    mov %rax, %rdi
    mov (%r10), %rsi
    mov $PG_ADDR, %rcx
    and %rcx, %rsi
    mov $512, %ecx
    rep movsq
    pop %rdi
    or $(PG_P|PG_RW|PG_U), %rax
    mov %rax, (%r10)
4:  test $1, %r8b
    jnz 5f
    invlpg (%r9)
    ret
5:  mov %cr3, %rax
    mov %rax, %cr3
    ret

# cow_setup: COW_PAGES read-only user pages; qword k of page i = COW_WORD(i, k).
cow_setup:
    lea pt_user_a+(COW_VA-USER_BASE)/512(%rip), %rsi
    xor %r8d, %r8d
1:  call alloc_frame
    lea cow_old(%rip), %rcx
    mov %rax, (%rcx,%r8,8)
    mov %rax, %rdi
    or $(PG_P|PG_U), %rax
    mov %rax, (%rsi,%r8,8)
    xor %ecx, %ecx
2:  call cow_word
    mov %rax, (%rdi,%rcx,8)
    inc %ecx
    cmp $512, %ecx
    jb 2b
    inc %r8d
    cmp $COW_PAGES, %r8d
    jb 1b
    ret
# cow_word: %rax = 0xC0DE000000000000 + (page %r8 << 16) + qword index %rcx
cow_word:
    mov %r8, %rax
    shl $16, %rax
    add %rcx, %rax
    push %rdx
    mov $0xC0DE000000000000, %rdx
    add %rdx, %rax
    pop %rdx
    ret

# cow_check: the old frames are unchanged; the new ones are copies holding the user's write;
# the PTEs map the new frames RW.
cow_check:
    PUTS "cow faults="
    mov cow_faults(%rip), %rax
    call putdec64
    cmpq $0, cow_bad(%rip)
    jne 1f
    PUTS ", all err=7 on read-only PTEs\n"
    jmp 2f
1:  PUTS ", BAD faults="
    mov cow_bad(%rip), %rax
    call putdec64
    call newline
2:  xor %r10d, %r10d                   # differences in old frames
    xor %r11d, %r11d                   # differences in new frames / PTEs
    lea pt_user_a+(COW_VA-USER_BASE)/512(%rip), %rbx
    lea cow_old(%rip), %r12
    lea cow_new(%rip), %r13
    xor %r8d, %r8d
3:  mov (%r12,%r8,8), %rsi
    mov (%r13,%r8,8), %rdi
    test %rdi, %rdi
    jz 6f
    mov (%rbx,%r8,8), %rax
    mov $PG_ADDR, %rdx
    and %rax, %rdx
    cmp %rdx, %rdi
    jne 6f
    and $(PG_P|PG_RW|PG_U), %eax
    cmp $(PG_P|PG_RW|PG_U), %eax
    je 4f
6:  inc %r11
    jmp 8f
4:  xor %ecx, %ecx
5:  call cow_word
    cmp (%rsi,%rcx,8), %rax
    je 7f
    inc %r10
7:  lea (COW_OFF/8)(%r8), %rdx
    cmp %rdx, %rcx
    jne 9f
    lea COW_VAL(%r8), %rax
9:  cmp (%rdi,%rcx,8), %rax
    je 10f
    inc %r11
10: inc %ecx
    cmp $512, %ecx
    jb 5b
8:  inc %r8d
    cmp $COW_PAGES, %r8d
    jb 3b
    test %r10, %r10
    jnz 1f
    PUTS "cow old frames unchanged\n"
    jmp 2f
1:  PUTS "cow old frames CHANGED\n"
2:  test %r11, %r11
    jnz 1f
    PUTS "cow new frames hold copy + write, PTEs point at them\n"
    ret
1:  PUTS "cow new frames BAD\n"
    ret

# ---------------------------------------------------------------- tasks and the timer
# (run_tasks, task_init, resume_task, timer_handler, sys_texit: RING3_TASKS above)

# tasks_report: per-task results (timing-independent lines only).
tasks_report:
    lea tcbs(%rip), %rbx
    mov $'A', %r12d
    call task_report
    add $TCB_SIZE, %rbx
    mov $'B', %r12d
    call task_report
    cmpq $MIN_SWITCHES, switches(%rip)
    jb 1f
    PUTS "switches >= 20\n"
    jmp 2f
1:  PUTS "switches < 20: BAD\n"
2:  jmp kernel_ticks_report

.macro TASK_LINE what
    PUTS "task "
    mov %r12d, %eax
    call putc
    PUTS " \what"
.endm
# task_report: %rbx = tcb, %r12d = letter.
task_report:
    mov TCB_RESULT(%rbx), %r13
    mov TCB_PRIV(%rbx), %r14
    TASK_LINE "xmm "
    test $ERR_XMM, %r13
    jnz 1f
    PUTS "ok\n"
    jmp 2f
1:  PUTS "BAD\n"
2:  TASK_LINE "gprs, stack, mxcsr, x87 "
    test $~ERR_XMM, %r13
    jnz 1f
    PUTS "ok\n"
    jmp 2f
1:  PUTS "BAD, result="
    mov %r13, %rax
    call puthex64
    call newline
2:  TASK_LINE "private page "
    cmp PV_ID(%r14), %r12
    jne 1f
    cmpq $0, PV_COUNT(%r14)
    je 1f
    PUTS "has its id and a nonzero spin count\n"
    ret
1:  PUTS "BAD\n"
    ret

# ---------------------------------------------------------------- user side (ring 3)
.section .text.user, "ax"              # after user_text_start (ring3_64.inc)

# 1. compute
user_compute:
    mov $0x243F6A8885A308D3, %rax      # xorshift64 state
    xor %ebx, %ebx                     # sum
    mov $0x13198A2E03707344, %r10      # LCG-style accumulator
    mov $6364136223846793005, %r9
    mov $N_COMPUTE, %r8d
1:  mov %rax, %rdx
    shl $13, %rdx
    xor %rdx, %rax
    mov %rax, %rdx
    shr $7, %rdx
    xor %rdx, %rax
    mov %rax, %rdx
    shl $17, %rdx
    xor %rdx, %rax
    add %rax, %rbx
    imul %r9, %r10
    add %rax, %r10
    lea 0x9E37(%rbx,%r10,2), %rbx
    dec %r8d
    jnz 1b
    UPUTHEX "compute xorshift state", %rax
    xor %r10, %rbx
    UPUTHEX "compute checksum", %rbx
    UDONE

# 2. syscall and int $0x80 round trips
user_syscalls:
    xor %ebx, %ebx                     # last value returned
    xor %r12d, %r12d                   # mismatches
    mov $N_CALLS, %r13d
1:  mov $SYS_COUNT, %eax
    syscall
    inc %rbx
    cmp %rbx, %rax
    je 2f
    inc %r12
    mov %rax, %rbx
2:  dec %r13d
    jnz 1b
    UPUTDEC "syscall: last counter", %rbx
    test %r12, %r12
    jnz 3f
    UPUTS "syscall: every return was previous + 1: ok\n"
    jmp 4f
3:  UPUTDEC "syscall: bad returns", %r12
4:  xor %ebx, %ebx
    xor %r12d, %r12d
    mov $N_CALLS, %r13d
1:  mov $SYS_COUNT80, %eax
    int $0x80
    inc %rbx
    cmp %rbx, %rax
    je 2f
    inc %r12
    mov %rax, %rbx
2:  dec %r13d
    jnz 1b
    UPUTDEC "int 0x80: last counter", %rbx
    test %r12, %r12
    jnz 3f
    UPUTS "int 0x80: every return was previous + 1: ok\n"
    jmp 4f
3:  UPUTDEC "int 0x80: bad returns", %r12
4:  UDONE

# 3. demand paging
user_demand:
    mov $DEMAND_VA, %edi
    xor %ecx, %ecx
    mov $0x5DEECE66D, %rsi
1:  mov %rcx, %rax                     # pages 0..31: qword k = (k * 0x5DEECE66D) ^ (k << 40)
    imul %rsi, %rax
    mov %rcx, %rdx
    shl $40, %rdx
    xor %rdx, %rax
    mov %rax, (%rdi,%rcx,8)
    inc %ecx
    cmp $32 * 512, %ecx
    jb 1b
    mov $DEMAND_VA + 32 * 4096, %edi   # pages 32..63: one rep stosq, 32 faults inside it
    mov $32 * 512, %ecx
    mov $0xA5A5F00DCAFE0001, %rax
    rep stosq
    UPUTHEX "rep stosq left rcx", %rcx
    mov $DEMAND_VA, %esi
    xor %ecx, %ecx
    xor %ebx, %ebx
2:  rol $5, %rbx
    xor (%rsi,%rcx,8), %rbx
    add %rcx, %rbx
    inc %ecx
    cmp $DEMAND_PAGES * 512, %ecx
    jb 2b
    UPUTHEX "demand checksum", %rbx
    UDONE

# 4. copy-on-write
user_cow:
    call cow_sum
    UPUTHEX "cow checksum before writes", %rbx
    mov $COW_VA + COW_OFF, %edi
    xor %ecx, %ecx
1:  lea COW_VAL(%rcx), %rax
    mov %rax, (%rdi,%rcx,8)            # #PF err=7, then retried
    cmp (%rdi,%rcx,8), %rax
    jne 3f
    mov %rax, (%rdi,%rcx,8)            # writable now: no fault
    add $4096, %rdi
    inc %ecx
    cmp $COW_PAGES, %ecx
    jb 1b
    UPUTS "cow writes read back\n"
    jmp 4f
3:  UPUTS "cow write NOT read back\n"
4:  call cow_sum
    UPUTHEX "cow checksum after writes", %rbx
    UDONE
# cow_sum: %rbx = sum of every qword of the COW pages.
cow_sum:
    mov $COW_VA, %esi
    xor %ecx, %ecx
    xor %ebx, %ebx
1:  add (%rsi,%rcx,8), %rbx
    inc %ecx
    cmp $COW_PAGES * 512, %ecx
    jb 1b
    ret

# 5. a task (address space A or B); %rdi = 'A' or 'B'
task_entry:
    mov $PRIV_VA, %esi
    mov %rdi, PV_ID(%rsi)
    mov $0x9E3779B97F4A7C15, %rbx      # xmm patterns from a per-task seed
    imul %rdi, %rbx
    mov %rbx, %rax
    xor %ecx, %ecx
1:  mov %rax, PV_XMM_PAT(%rsi,%rcx,8)
    rol $9, %rax
    add %rbx, %rax
    inc %ecx
    cmp $32, %ecx
    jb 1b
    mov %rdi, %rax                     # GPR patterns: id << 56 | k << 48 | 0xbadc0ffee0 + k
    shl $56, %rax
    mov $0xBADC0FFEE0, %rdx
    or %rdx, %rax
    mov $0x0001000000000001, %rdx
    xor %ecx, %ecx
1:  mov %rax, PV_GPR(%rsi,%rcx,8)
    add %rdx, %rax
    inc %ecx
    cmp $10, %ecx
    jb 1b
    UTASK_FPU_INIT
    mov %rdi, %rax                     # stack marker
    not %rax
    mov %rax, PV_SMARK(%rsi)
    push %rax
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movdqa PV_XMM_PAT+16*\n(%rsi), %xmm\n
    .endr
    mov PV_GPR+0(%rsi), %rbx
    mov PV_GPR+8(%rsi), %rbp
    .irp n, 8,9,10,11,12,13,14,15
    mov PV_GPR+8*(\n-6)(%rsi), %r\n
    .endr
task_spin:
    mov $PRIV_VA, %esi
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    movdqa %xmm\n, PV_XMM_OUT+16*\n(%rsi)
    .endr
    xor %edx, %edx
    xor %ecx, %ecx
1:  mov PV_XMM_OUT(%rsi,%rcx,8), %rax
    xor PV_XMM_PAT(%rsi,%rcx,8), %rax
    or %rax, %rdx
    inc %ecx
    cmp $32, %ecx
    jb 1b
    test %rdx, %rdx
    jz 1f
    orq $ERR_XMM, PV_ERR(%rsi)
1:  UTASK_FPU_CHECK orq, PV_ERR(%rsi)
    cmp PV_GPR+0(%rsi), %rbx
    jne 2f
    cmp PV_GPR+8(%rsi), %rbp
    jne 2f
    .irp n, 8,9,10,11,12,13,14,15
    cmp PV_GPR+8*(\n-6)(%rsi), %r\n
    jne 2f
    .endr
    jmp 1f
2:  orq $ERR_GPR, PV_ERR(%rsi)
1:  cmp $USTACK_TOP - 8, %rsp
    jne 2f
    mov (%rsp), %rax
    cmp PV_SMARK(%rsi), %rax
    je 1f
2:  orq $ERR_STACK, PV_ERR(%rsi)
1:  incq PV_COUNT(%rsi)
    mov $SHARED_VA, %eax
    cmpq $MIN_SWITCHES, SH_SWITCHES(%rax)
    jb task_spin
    mov PV_ERR(%rsi), %rdi
    mov $SYS_TEXIT, %eax
    syscall
    ud2

# 6. user faults
user_faults:
    UEXPECT 1f, 2f
1:  hlt                                # #GP(0)
2:  UEXPECT 1f, 2f
1:  cli                                # #GP(0): IOPL 0 < CPL 3
2:  UEXPECT 1f, 2f
1:  ud2                                # #UD
2:  UEXPECT 1f, 2f
1:  int3                               # #BP through the DPL-3 gate: RIP after the int3
2:  UEXPECT 1f, 2f
    xor %ecx, %ecx
    mov $1, %eax
    xor %edx, %edx
1:  div %ecx                           # #DE
2:  UDONE

.section .data
.align 8
mxcsr_default: .long 0x1F80
.align 8
sc_counter: .quad 0
int80_counter: .quad 0
demand_faults: .quad 0
demand_bad: .quad 0
cow_faults: .quad 0
cow_bad: .quad 0
cow_old: .fill COW_PAGES, 8, 0
cow_new: .fill COW_PAGES, 8, 0
