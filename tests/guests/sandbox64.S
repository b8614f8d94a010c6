# bits: 64
# expect-exit: 1
# Sandbox escape attempts from 64-bit guest user code (the test for the native engine's sandbox:
# guest user code runs on the host CPU in a seccomp-filtered child whose stub window sits at
# 0x100000000000). Every attempt must reach the guest kernel or fault in the guest, never the
# host; the printed lines are the same whatever engine runs user code (and under QEMU).
#  1. raw host system calls through SYSCALL (write "PWNED-SYSCALL", open a canary file, execve,
#     exit, exit_group, getpid, mmap of a kernel page, rt_sigreturn, futex on the control word,
#     sched_yield): the LSTAR handler prints each number and first argument and returns a marker
#     that the user checks.
#  2. the same through int $0x80 from 64-bit code with i386 numbers (DPL-3 gate, vector 0x80).
#  3. sysenter with IA32_SYSENTER_CS = 0 (#UD on AMD, #GP(0) on Intel: one line either way).
#  4. compatibility mode (selector 0x23, flat 32-bit DPL 3): int $0x80 write/open/execve/exit,
#     then an int $0x80 asking the kernel to iretq back to 64-bit code; then SYSCALL in
#     compatibility mode with the same four i386 numbers, each entered by a far jump from 64-bit
#     code: it reaches the guest kernel through CSTAR where it can be delivered (translated user
#     code, QEMU), or as #UD where it cannot (btvisor's native engine: the host rewrote the
#     return address before seccomp stopped the call); one line either way; and sysenter in
#     compatibility mode (#UD on AMD, #GP(0) on Intel with SYSENTER_CS = 0: one line).
#  5. reads of addresses where a host process's memory lives (not mapped by the guest: #PF
#     err=4), a write (err=6), a read of and a call into the host's vsyscall page.
#  6. user code reads the stub window's code (native: works; translated/QEMU: the first read
#     #PFs and the kernel ends the section) and jumps to every 0f 05 pair found with the
#     registers of an attack: mmap of a supervisor SECRET page at 0x50000000 through the RAM
#     descriptor 3, mmap over the stub's code, mprotect of the stub's code RWX, munmap of the
#     control area, getpid, write "PWNED-STUB", futex wait on the control word. Whatever
#     happens next (fault, system call, timer interrupt with RIP in the window: PIT channel 0 at
#     1 kHz through the 8259) ends the attempt and the kernel resumes the user at the next one.
#     Nothing printed depends on how many attempts were made.
#  7. 0x50000000 is still not mapped (a leak prints "SECRET LEAKED"), the SECRET page's own
#     address is a supervisor page (#PF err=5), the stub window's code is not writable (#PF
#     err=6), and the kernel checks the SECRET page is intact.
#  8. the guest maps its own user page in the stub window's PML4 slot (32) at 0x100000000000
#     (no TLB flush: the entry was not present) with a pattern and a routine: the user reads,
#     writes and calls it (btvisor's native engine runs this address space translated).
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"
.include "ring3_64.inc"

.set MSR_SYSENTER_CS, 0x174
.set MSR_SYSENTER_ESP, 0x175
.set MSR_SYSENTER_EIP, 0x176

# the guest's own system calls (host numbers below 0x1000 are recorded and answered with a marker)
.set SYS_PUTS, 0x1001                  # rdi = string
.set SYS_PUTHEX, 0x1002                # rdi = value: 16 hex digits and a newline
.set SYS_EXPECT, 0x1003                # rdi = faulting insn, rsi = resume, rdx = mode
.set SYS_ARM, 0x1004                   # rdi = resume address: the next event ends the attempt
.set SYS_SCAN, 0x1005                  # rdi = resume address on a #PF in the window (0: off)
.set SYS_TO64, 0x1006                  # int $0x80 only: iretq to 64-bit code at ebx
.set SYS_DONE, 0x1007                  # back to the kernel's main flow
.set SYS_FIRST, 0x1000

.set MODE_REPORT, 0                    # print the exception line
.set MODE_SYSENTER, 1                  # #UD or #GP: one fixed line
.set MODE_VSYSCALL, 2                  # a call into the vsyscall page
.set MODE_SECRET, 3                    # a #PF on the SECRET page (its address is not printed)
.set MODE_CSYSCALL, 4                  # compat SYSCALL: CSTAR or #UD, back to 64-bit code
.set MODE_CSYSENTER, 5                 # compat sysenter: #UD or #GP(0), back to 64-bit code

.set SC_MARK, 0x5AFE5AFE00000000       # SYSCALL returns SC_MARK | nr
.set I80_MARK, 0x5AFE0000              # int $0x80 returns I80_MARK | nr

.set WIN, 0x100000000000               # btvisor's stub window (PML4 slot 32)
.set WIN_CODE, 0x2000                  # its code bytes
.set WIN_CTRL, WIN + 0x2000            # its control area (the futex word first)
.set WIN_SPAN, 0x20000
.set ATTACK_VA, 0x50000000             # where the attacks try to map the SECRET page
.set SECRET_PAT, 0x5EC2E75EC2E75EC2
.set WIN_PAT, 0x57A7B0C5C0DEF00D
.set WIN_CODE_QWORD, 0x0000C300001234B8 # mov $0x1234, %eax; ret
.set PIT_COUNT, 1193                   # 1 kHz
.set ATTEMPT_TICKS, 50                 # an attempt still running after this many ticks ends

# ---------------------------------------------------------------- user-side macros (ring 3)
# (UPUTS, UPUTHEX, UDONE: ring3_64.inc)
.macro UEXPECT at, resume, mode=MODE_REPORT
    lea \at(%rip), %rdi
    lea \resume(%rip), %rsi
    mov $\mode, %edx
    mov $SYS_EXPECT, %eax
    syscall
.endm
.macro CSYSCALL nr, b, c, d
    UEXPECT 9004f, 9004f, MODE_CSYSCALL
    mov $\b, %ebx
    mov $\c, %ecx
    mov $\c, %ebp                      # the i386 fast-call convention's second argument
    mov $\d, %edx
    mov $\nr, %eax
    ljmp *csyscall_ptr(%rip)
9004:
.endm
# a raw host system call through SYSCALL; %r12 counts the markers that came back
.macro HOSTCALL nr, a0, a1=$0, a2=$0, a3=$0, a4=$0, a5=$0
    mov \a0, %rdi
    mov \a1, %rsi
    mov \a2, %rdx
    mov \a3, %r10
    mov \a4, %r8
    mov \a5, %r9
    mov $\nr, %eax
    syscall
    movabs $SC_MARK | \nr, %rcx
    cmp %rcx, %rax
    jne 9001f
    inc %r12d
9001:
.endm
# a raw i386 system call through int $0x80 (64-bit or compatibility mode); %esi counts markers
.macro I386CALL nr, b, c=$0, d=$0
    mov \b, %ebx
    mov \c, %ecx
    mov \d, %edx
    mov $\nr, %eax
    int $0x80
    cmp $I80_MARK | \nr, %eax
    jne 9002f
    inc %esi
9002:
.endm

.section .text
main64:
    call idt64_init
    PIC_INIT
    PUTS "sandbox64\n"
    TSS64_INIT
    # every exception goes to fault_handler; IRQ0 to timer_handler; int $0x80 (DPL 3)
    lea fault_handler(%rip), %rax
    lea exc_handlers(%rip), %rdi
    mov $32, %ecx
1:  mov %rax, (%rdi)
    add $8, %rdi
    loop 1b
    lea timer_handler(%rip), %rax
    mov %rax, exc_handlers+0x20*8(%rip)
    mov $0x80, %edi
    mov $0xEE00, %edx
    call idt_set_attr
    lea int80_handler(%rip), %rax
    mov %rax, exc_handlers+0x80*8(%rip)
    SYSCALL_INIT cstar_entry
    # SYSENTER MSRs all zero: SYSENTER_CS = 0 makes sysenter #GP(0) where it is valid
    xor %eax, %eax
    xor %edx, %edx
    mov $MSR_SYSENTER_CS, %ecx
    wrmsr
    mov $MSR_SYSENTER_ESP, %ecx
    wrmsr
    mov $MSR_SYSENTER_EIP, %ecx
    wrmsr
    # the SECRET page: supervisor only, a known pattern
    lea secret_page(%rip), %rdi
    movabs $SECRET_PAT, %rax
    mov $512, %ecx
    rep stosq
    call build_tables
    lea pml4_a(%rip), %rax
    mov %rax, %cr3

    PUTS "-- 1. raw host system calls through syscall\n"
    lea user_syscalls(%rip), %rdi
    call run_user
    PUTS "-- 2. raw host system calls through int 0x80 in 64-bit code\n"
    lea user_int80(%rip), %rdi
    call run_user
    PUTS "-- 3. sysenter with SYSENTER_CS=0\n"
    lea user_sysenter(%rip), %rdi
    call run_user
    PUTS "-- 4. int 0x80, syscall and sysenter in compatibility mode\n"
    lea user_compat(%rip), %rdi
    call run_user
    PUTS "-- 5. host process addresses\n"
    lea user_hostmem(%rip), %rdi
    call run_user
    PUTS "-- 6. jumps into the stub's system call instructions\n"
    call timer_start
    lea user_stub(%rip), %rdi
    call run_user
    call timer_stop
    PUTS "-- 7. after the attacks\n"
    lea user_after(%rip), %rdi
    call run_user
    call secret_check
    PUTS "-- 8. a guest user page in the stub window's PML4 slot\n"
    call window_map
    lea user_window(%rip), %rdi
    call run_user
    PUTHEX "kernel reads the frame at +0x808", win_frame+0x808(%rip)
    PUTHEX "kernel reads the frame at +0x000", win_frame(%rip)
    PUTS "done\n"
    mov $0, %al
    ret

# ---------------------------------------------------------------- kernel helpers
# build_tables: pml4_a[0] -> pdpt_a -> pd_a[0] -> pt_low (all U): 4 KiB identity pages of 0..2 MiB,
# supervisor RW except the user text (U, read-only) and the user data (U RW); page 0 and
# everything above 2 MiB not present.
build_tables:
    lea tables_start(%rip), %rdi
    mov $((tables_end - tables_start) / 8), %ecx
    xor %eax, %eax
    rep stosq
    lea pt_low(%rip), %rdi
    lea user_text_start(%rip), %r8
    lea user_text_end(%rip), %r9
    lea user_data_start(%rip), %r10
    lea user_data_end(%rip), %r11
    mov $1, %ecx
1:  mov %rcx, %rax
    shl $12, %rax
    lea 3(%rax), %rdx                  # P RW
    cmp %r8, %rax
    jb 2f
    cmp %r9, %rax
    jae 2f
    lea 5(%rax), %rdx                  # P U
2:  cmp %r10, %rax
    jb 3f
    cmp %r11, %rax
    jae 3f
    lea 7(%rax), %rdx                  # P RW U
3:  mov %rdx, (%rdi,%rcx,8)
    inc %ecx
    cmp $512, %ecx
    jb 1b
    lea pt_low+7(%rip), %rax
    mov %rax, pd_a(%rip)
    lea pd_a+7(%rip), %rax
    mov %rax, pdpt_a(%rip)
    lea pdpt_a+7(%rip), %rax
    mov %rax, pml4_a(%rip)
    ret

# window_map: a user page at WIN (PML4[32] -> pdpt_w -> pd_w -> pt_w -> win_frame, U RW at every
# level) holding a routine at +0 and a pattern at +0x800. No flush: the entry was not present.
window_map:
    lea win_frame(%rip), %rdi
    xor %eax, %eax
    mov $512, %ecx
    rep stosq
    movabs $WIN_CODE_QWORD, %rax
    mov %rax, win_frame(%rip)
    movabs $WIN_PAT, %rax
    mov %rax, win_frame+0x800(%rip)
    lea win_frame+7(%rip), %rax
    mov %rax, pt_w(%rip)
    lea pt_w+7(%rip), %rax
    mov %rax, pd_w(%rip)
    lea pd_w+7(%rip), %rax
    mov %rax, pdpt_w(%rip)
    lea pdpt_w+7(%rip), %rax
    mov %rax, pml4_a+(WIN >> 39)*8(%rip)
    ret

# secret_check: the SECRET page still holds its pattern everywhere.
secret_check:
    lea secret_page(%rip), %rsi
    movabs $SECRET_PAT, %rax
    xor %ecx, %ecx
1:  cmp (%rsi,%rcx,8), %rax
    jne 2f
    inc %ecx
    cmp $512, %ecx
    jb 1b
    PUTS "kernel: SECRET page intact\n"
    ret
2:  PUTS "kernel: SECRET page CHANGED\n"
    ret

# timer_start / timer_stop: PIT channel 0 at 1 kHz on IRQ0 (vector 0x20), unmasked / masked.
timer_start:
    movq $0, ticks(%rip)
    PIT_START
    ret
timer_stop:
    mov $0xff, %al
    out %al, $0x21
    ret

# run_user: run %rdi in ring 3 (user stack) until it makes SYS_DONE.
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
    lea ustack_top(%rip), %rsp
    sysretq                            # SYS_DONE returns through back_to_kernel

# in_window: CF=1 if %rax is in the stub window. Clobbers %rdx.
in_window:
    push %rax
    movabs $WIN, %rdx
    sub %rdx, %rax
    cmp $WIN_SPAN, %rax
    pop %rax
    ret

# ---------------------------------------------------------------- system calls
syscall_entry:
    mov %rsp, sc_user_rsp(%rip)
    lea sc_stack_top(%rip), %rsp
    cmpq $0, attempt_active(%rip)
    jne sc_end_attempt
    push %rcx
    push %r11
    push %rdi
    push %rsi
    push %rdx
    push %r8
    push %r9
    push %r10
    cmp $SYS_FIRST, %rax
    jae 1f
    call sc_record
    jmp 2f
1:  call sys_api
2:  pop %r10
    pop %r9
    pop %r8
    pop %rdx
    pop %rsi
    pop %rdi
    pop %r11
    pop %rcx
    mov sc_user_rsp(%rip), %rsp
    sysretq
# a SYSCALL during an attack attempt: back to the user's next attempt
sc_end_attempt:
    movq $0, attempt_active(%rip)
    incq attempts_done(%rip)
    mov attempt_resume(%rip), %rcx
    mov $0x202, %r11d
    lea ustack_top(%rip), %rsp
    sysretq

# a compat-mode SYSCALL arrives at CSTAR (ring 0, user stack, IF clear): it reached the guest
# kernel; back to 64-bit user code at exc_resume.
cstar_entry:
    lea sc_stack_top(%rip), %rsp
    cmpq $MODE_CSYSCALL, expect_mode(%rip)
    jne 1f
    PUTS "compat syscall: stopped in the guest kernel\n"
    jmp 2f
1:  PUTS "compat syscall: unexpected\n"
2:  mov exc_resume(%rip), %rax
    movq $0, exc_resume(%rip)
    movq $0, exc_ref(%rip)
    pushq $UDATA|3
    lea ustack_top(%rip), %rcx
    push %rcx
    pushq $0x202
    pushq $UCODE64|3
    push %rax
    iretq

# sc_record: a host system call number (%rax, first argument %rdi) reached the guest kernel.
sc_record:
    PUTS "syscall nr="
    call puthex64
    push %rax
    PUTS " arg0="
    mov %rdi, %rax
    mov $16, %ecx
    call put_arg
    PUTS " reached the guest kernel\n"
    pop %rax
    movabs $SC_MARK, %rdx
    or %rdx, %rax
    ret

# put_arg: print %rax as %ecx hex digits, or, if it points into the user text, as the string
# there in quotes (so no printed value depends on where the linker put the strings).
# Preserves all registers.
put_arg:
    push %rsi
    lea user_text_start(%rip), %rsi
    cmp %rsi, %rax
    jb 1f
    lea user_text_end(%rip), %rsi
    cmp %rsi, %rax
    jae 1f
    push %rax
    mov %rax, %rsi
    mov $'"', %al
    call putc
    call puts
    call putc
    pop %rax
    pop %rsi
    ret
1:  call puthex_n
    pop %rsi
    ret

# sys_api: the guest's own calls: %rax = number, %rdi / %rsi / %rdx = arguments.
sys_api:
    cmp $SYS_PUTS, %eax
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
1:  cmp $SYS_EXPECT, %eax
    jne 1f
    call check_pending
    mov %rdi, exc_ref(%rip)
    mov %rsi, exc_resume(%rip)
    mov %rdx, expect_mode(%rip)
    ret
1:  cmp $SYS_ARM, %eax
    jne 1f
    mov %rdi, attempt_resume(%rip)
    movq $0, attempt_ticks(%rip)
    movq $1, attempt_active(%rip)
    ret
1:  cmp $SYS_SCAN, %eax
    jne 1f
    mov %rdi, scan_resume(%rip)
    ret
1:  cmp $SYS_DONE, %eax
    jne 1f
    call check_pending
    jmp back_to_kernel
1:  PUTS "bad guest system call\n"
    mov $4, %al
    call exit

# check_pending: an expected fault that never came.
check_pending:
    cmpq $0, exc_resume(%rip)
    je 1f
    PUTS "expected fault did not happen\n"
    movq $0, exc_resume(%rip)
    movq $0, exc_ref(%rip)
1:  ret

# int80_handler: i386 numbers are recorded and answered with I80_MARK | eax; SYS_TO64 returns to
# 64-bit code at ebx.
int80_handler:
    cmpq $0, attempt_active(%rip)
    jne end_attempt
    mov F_RAX(%rdi), %eax
    cmp $SYS_TO64, %eax
    jne 1f
    mov F_RBX(%rdi), %eax
    mov %rax, F_RIP(%rdi)
    movq $UCODE64|3, F_CS(%rdi)
    ret
1:  mov %eax, %r8d
    PUTS "int 0x80 eax="
    call puthex32
    PUTS " ebx="
    mov F_RBX(%rdi), %eax
    mov $8, %ecx
    call put_arg
    PUTS " cs="
    mov F_CS(%rdi), %eax
    call puthex16
    PUTS " reached the guest kernel\n"
    lea I80_MARK(%r8), %rax
    mov %rax, F_RAX(%rdi)
    ret

# ---------------------------------------------------------------- exceptions and the timer
# end_attempt: the attack attempt is over, whatever happened: resume the user's next one.
end_attempt:
    movq $0, attempt_active(%rip)
    incq attempts_done(%rip)
    mov attempt_resume(%rip), %rax
    mov %rax, F_RIP(%rdi)
    lea ustack_top(%rip), %rax
    mov %rax, F_RSP(%rdi)
    movq $UCODE64|3, F_CS(%rdi)
    movq $UDATA|3, F_SS(%rdi)
    movq $0x202, F_RFLAGS(%rdi)
    ret

fault_handler:
    testb $3, F_CS(%rdi)
    jz kernel_fault
    cmpq $0, attempt_active(%rip)
    jne end_attempt
    cmpq $14, F_VEC(%rdi)
    jne 1f
    cmpq $0, scan_resume(%rip)
    je 1f
    mov %cr2, %rax
    call in_window
    jnc 1f
    mov scan_resume(%rip), %rax        # the window is not there: end the scan quietly
    mov %rax, F_RIP(%rdi)
    movq $0, scan_resume(%rip)
    ret
1:  cmpq $0, exc_resume(%rip)
    je unexpected_fault
    mov expect_mode(%rip), %rax
    cmp $MODE_SYSENTER, %rax
    je fault_sysenter
    cmp $MODE_VSYSCALL, %rax
    je fault_vsyscall
    cmp $MODE_SECRET, %rax
    je fault_secret
    cmp $MODE_CSYSCALL, %rax
    je fault_csyscall
    cmp $MODE_CSYSENTER, %rax
    je fault_csysenter
    call exc_report
fault_resume:
    mov exc_resume(%rip), %rax
    mov %rax, F_RIP(%rdi)
    movq $0, exc_resume(%rip)
    movq $0, exc_ref(%rip)
    ret
fault_sysenter:
    mov F_VEC(%rdi), %rax
    cmp $6, %rax
    je 1f
    cmp $13, %rax
    jne 2f
    cmpq $0, F_ERR(%rdi)
    jne 2f
1:  mov F_RIP(%rdi), %rax
    cmp exc_ref(%rip), %rax
    jne 2f
    PUTS "sysenter trapped to the guest kernel\n"
    jmp fault_resume
2:  PUTS "sysenter: unexpected exception: "
    call exc_report
    jmp fault_resume
# compat SYSCALL that came as #UD (btvisor's native engine: RIP is not known, not checked)
fault_csyscall:
    cmpq $6, F_VEC(%rdi)
    jne 1f
    PUTS "compat syscall: stopped in the guest kernel\n"
    jmp fault_resume64
1:  PUTS "compat syscall: unexpected exception: "
    call exc_report
    jmp fault_resume64
fault_csysenter:
    mov F_VEC(%rdi), %rax
    cmp $6, %rax
    je 1f
    cmp $13, %rax
    jne 2f
    cmpq $0, F_ERR(%rdi)
    jne 2f
1:  mov F_RIP(%rdi), %rax
    cmp exc_ref(%rip), %rax
    jne 2f
    PUTS "compat sysenter trapped to the guest kernel\n"
    jmp fault_resume64
2:  PUTS "compat sysenter: unexpected exception: "
    call exc_report
# resume the user at exc_resume in 64-bit mode (the fault came from compatibility mode)
fault_resume64:
    movq $UCODE64|3, F_CS(%rdi)
    movq $UDATA|3, F_SS(%rdi)
    lea ustack_top(%rip), %rax
    mov %rax, F_RSP(%rdi)
    movq $0x202, F_RFLAGS(%rdi)
    jmp fault_resume
fault_secret:
    lea secret_page(%rip), %rax
    mov %cr2, %rdx
    cmp %rax, %rdx
    jne 1f
    cmpq $14, F_VEC(%rdi)
    jne 1f
    PUTS "exc #PF err="
    mov F_ERR(%rdi), %rax
    call puthex32
    PUTS " rip=ref+"
    mov F_RIP(%rdi), %rax
    sub exc_ref(%rip), %rax
    call puthex16
    PUTS " cr2=the SECRET page\n"
    jmp fault_resume
1:  call exc_report
    jmp fault_resume
fault_vsyscall:
    PUTS "call into the vsyscall page: exc "
    mov F_VEC(%rdi), %rax
    call puthex8
    PUTS " err="
    mov F_ERR(%rdi), %rax
    call puthex32
    PUTS " cr2="
    mov %cr2, %rax
    call puthex64
    mov F_RIP(%rdi), %rax
    mov %cr2, %rdx
    cmp %rdx, %rax
    jne 1f
    PUTS " rip=cr2"
    jmp 2f
1:  PUTS " rip="
    call puthex64
2:  mov F_RSP(%rdi), %rax
    mov (%rax), %rax
    cmp exc_ref(%rip), %rax
    jne 3f
    PUTS ", return address pushed\n"
    addq $8, F_RSP(%rdi)
    jmp fault_resume
3:  PUTS ", return address NOT on the stack\n"
    jmp fault_resume
unexpected_fault:
    call exc_report
    PUTS "unexpected user fault\n"
    mov $5, %al
    call exit
kernel_fault:
    call exc_report
    PUTS "kernel fault\n"
    mov $6, %al
    call exit

# timer_handler: IRQ0. An attempt whose user RIP is in the window (or that ran for
# ATTEMPT_TICKS ticks) is over.
timer_handler:
    incq ticks(%rip)
    mov $0x20, %al
    out %al, $0x20
    testb $3, F_CS(%rdi)
    jz 1f
    cmpq $0, attempt_active(%rip)
    je 1f
    incq attempt_ticks(%rip)
    cmpq $ATTEMPT_TICKS, attempt_ticks(%rip)
    jae end_attempt
    mov F_RIP(%rdi), %rax
    call in_window
    jc end_attempt
1:  ret

# ---------------------------------------------------------------- user side (ring 3)
.section .text.user, "ax"              # after user_text_start (ring3_64.inc)

# 1. raw host system calls through SYSCALL
user_syscalls:
    xor %r12d, %r12d
    HOSTCALL 1, $1, $pwned_sc, $14                       # write(1, "PWNED-SYSCALL\n", 14)
    lea canary_path(%rip), %rbx
    HOSTCALL 2, %rbx, $0x41, $0644                            # open(canary, O_CREAT|O_WRONLY)
    lea sh_path(%rip), %rbx
    lea sh_argv(%rip), %rbp
    HOSTCALL 59, %rbx, %rbp                                   # execve("/bin/sh", argv, 0)
    HOSTCALL 60, $42                                          # exit(42)
    HOSTCALL 231, $43                                         # exit_group(43)
    HOSTCALL 39, $0                                           # getpid()
    mov $secret_page, %ebx
    HOSTCALL 9, $ATTACK_VA, $4096, $1, $0x11, $3, %rbx        # mmap(SECRET) through fd 3
    HOSTCALL 15, $0                                           # rt_sigreturn
    movabs $WIN_CTRL, %rbx
    HOSTCALL 202, %rbx, $0, $0                                # futex(control word, WAIT, 0)
    HOSTCALL 24, $0                                           # sched_yield()
    cmp $10, %r12d
    jne 1f
    UPUTS "syscall: all 10 calls returned the guest kernel's marker\n"
    UDONE
1:  UPUTHEX "syscall: BAD, markers returned", %r12
    UDONE

# 2. raw i386 system calls through int $0x80 from 64-bit code
user_int80:
    xor %esi, %esi
    I386CALL 4, $1, $pwned_i80, $12                           # write(1, "PWNED-INT80\n", 12)
    I386CALL 5, $canary_path, $0x41, $0644                    # open
    I386CALL 11, $sh_path, $sh_argv32                         # execve
    I386CALL 1, $42                                           # exit(42)
    I386CALL 252, $43                                         # exit_group(43)
    I386CALL 20, $0                                           # getpid()
    cmp $6, %esi
    jne 1f
    UPUTS "int 0x80: all 6 calls returned the guest kernel's marker\n"
    UDONE
1:  UPUTHEX "int 0x80: BAD, markers returned", %rsi
    UDONE

# 3. sysenter
user_sysenter:
    UEXPECT 1f, 2f, MODE_SYSENTER
1:  sysenter
2:  UDONE

# 4. compatibility mode
user_compat:
    xor %esi, %esi
    ljmp *compat_ptr(%rip)
.code32
ucompat:
    I386CALL 4, $1, $pwned_c32, $13                           # write(1, "PWNED-COMPAT\n", 13)
    I386CALL 5, $canary_path, $0x41, $0644                    # open
    I386CALL 11, $sh_path, $sh_argv32                         # execve
    I386CALL 1, $42                                           # exit(42)
    mov $ucompat_back, %ebx
    mov $SYS_TO64, %eax
    int $0x80
    ud2
.code64
ucompat_back:
    mov %cs, %eax
    UPUTHEX "back in 64-bit code, cs", %rax
    cmp $4, %esi
    jne 1f
    UPUTS "compat: all 4 calls returned the guest kernel's marker\n"
    jmp 3f
1:  UPUTHEX "compat: BAD, markers returned", %rsi
3:  CSYSCALL 4, 1, pwned_cs32, 16                          # write(1, "PWNED-COMPATSYS\n", 16)
    CSYSCALL 5, canary_path, 0x41, 0644                    # open
    CSYSCALL 11, sh_path, sh_argv32, 0                     # execve
    CSYSCALL 1, 42, 0, 0                                   # exit(42)
    UEXPECT ucsysenter, 2f, MODE_CSYSENTER
    ljmp *csysenter_ptr(%rip)
2:  UDONE
.code32
ucsyscall:
    syscall
    ud2
ucsysenter:
    sysenter
    ud2
.code64

# 5. host process addresses: reads (#PF err=4), a write (err=6), the vsyscall page
user_hostmem:
    .irp addr, 0x555555554000, 0x7ffff7dd0000, 0x7ffd00000000, 0x7fffffffe000, 0x400000, 0xffffffffff600000
    UEXPECT 1f, 2f
    movabs $\addr, %rbx
1:  mov (%rbx), %rax
2:
    .endr
    UEXPECT 1f, 2f
    movabs $0x7fffffffe000, %rbx
1:  movq $0x1234, (%rbx)
2:  UEXPECT 2f, 2f, MODE_VSYSCALL
    lea vsys_buf(%rip), %rdi
    xor %esi, %esi
    movabs $0xffffffffff600000, %rax
    call *%rax
2:  mov vsys_buf(%rip), %rax
    or vsys_buf+8(%rip), %rax
    jnz 1f
    UPUTS "vsyscall buffer untouched\n"
    UDONE
1:  UPUTS "vsyscall buffer WRITTEN\n"
    UDONE

# 6. scan the stub window's code for 0f 05 and jump to each with attack registers
user_stub:
    lea scan_done(%rip), %rdi
    mov $SYS_SCAN, %eax
    syscall
    movq $0, u_scan_pos(%rip)
scan_next:
    mov u_scan_pos(%rip), %rcx
    cmp $WIN_CODE - 1, %rcx
    jae scan_end
    movabs $WIN, %rsi
    movzwl (%rsi,%rcx), %eax           # native: the stub's code; translated: #PF -> scan_done
    cmp $0x050f, %eax
    jne scan_skip
    movq $0, u_kind(%rip)
attempt_next:
    cmpq $N_KINDS, u_kind(%rip)
    jae scan_skip
    lea attempt_back(%rip), %rdi
    mov $SYS_ARM, %eax
    syscall
    mov u_kind(%rip), %rax
    imul $56, %rax
    lea attack_table(%rip), %rsi
    add %rax, %rsi
    movabs $WIN, %rcx
    add u_scan_pos(%rip), %rcx
    mov 8(%rsi), %rdi
    mov 24(%rsi), %rdx
    mov 32(%rsi), %r10
    mov 40(%rsi), %r8
    mov 48(%rsi), %r9
    mov (%rsi), %rax
    mov 16(%rsi), %rsi
    xor %ebx, %ebx
    xor %ebp, %ebp
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    lea scratch_top(%rip), %rsp
    jmp *%rcx
attempt_back:                          # the kernel resumes here after each attempt
    incq u_kind(%rip)
    jmp attempt_next
scan_skip:
    incq u_scan_pos(%rip)
    jmp scan_next
scan_end:
    xor %edi, %edi
    mov $SYS_SCAN, %eax
    syscall
scan_done:
    UPUTS "stub attack section done\n"
    UDONE

# 7. after the attacks
user_after:
    UEXPECT 1f, 3f
    mov $ATTACK_VA, %ebx
1:  mov (%rbx), %rax
    movabs $SECRET_PAT, %rcx
    cmp %rcx, %rax
    jne 2f
    UPUTS "SECRET LEAKED\n"
    jmp 4f
2:  UPUTS "attack address readable without a fault\n"
    jmp 4f
3:  UPUTS "attack address still unmapped\n"
4:  UEXPECT 1f, 2f, MODE_SECRET
    mov $secret_page, %ebx
1:  mov (%rbx), %rax                   # supervisor page: #PF err=5
2:  UEXPECT 1f, 2f
    movabs $WIN, %rbx
1:  movb $0x90, (%rbx)                 # the stub's code is not writable: #PF err=6
2:  UEXPECT 1f, 2f
    movabs $WIN_CTRL - 0x1000, %rbx
1:  movb $0x90, (%rbx)                 # nor the last code page
2:  UDONE

# 8. the guest's own page at WIN
user_window:
    movabs $WIN, %rbx
    mov 0x800(%rbx), %rax
    UPUTHEX "window page +0x800", %rax
    movabs $WIN, %rbx
    mov (%rbx), %rax
    UPUTHEX "window page +0x000", %rax
    movabs $WIN, %rbx
    movq $0x600DF00D, 0x808(%rbx)
    mov 0x808(%rbx), %rax
    UPUTHEX "window page +0x808 after a write", %rax
    movabs $WIN, %rbx
    xor %eax, %eax
    call *%rbx
    UPUTHEX "routine at 0x100000000000 returned", %rax
    UDONE

# ---------------------------------------------------------------- user read-only data
.section .text.user, "ax"
.subsection 1
.balign 8
compat_ptr: .long ucompat
    .word UCODE32|3
.balign 8
csyscall_ptr: .long ucsyscall
    .word UCODE32|3
.balign 8
csysenter_ptr: .long ucsysenter
    .word UCODE32|3
.balign 8
sh_argv: .quad sh_path, 0
sh_argv32: .long sh_path, 0
# attack registers: rax, rdi, rsi, rdx, r10, r8, r9
attack_table:
    .quad 9, ATTACK_VA, 4096, 1, 0x11, 3, secret_page      # mmap(SECRET) MAP_SHARED|MAP_FIXED
    .quad 9, WIN, 0x2000, 7, 0x11, 3, secret_page          # mmap RWX over the stub's code
    .quad 10, WIN, 0x1000, 7, 0, 0, 0                      # mprotect(stub code, RWX)
    .quad 11, WIN_CTRL, 0x4000, 0, 0, 0, 0                 # munmap(control area)
    .quad 39, 0, 0, 0, 0, 0, 0                             # getpid()
    .quad 1, 1, pwned_stub, 11, 0, 0, 0                    # write(1, "PWNED-STUB\n", 11)
    .quad 202, WIN_CTRL, 0, 0, 0, 0, 0                     # futex(state word, WAIT, 0): sleeps
.set N_KINDS, 7
pwned_sc: .ascii "PWNED-SYSCALL\n"
pwned_i80: .ascii "PWNED-INT80\n"
pwned_c32: .ascii "PWNED-COMPAT\n"
pwned_cs32: .ascii "PWNED-COMPATSYS\n"
pwned_stub: .ascii "PWNED-STUB\n"
canary_path: .asciz "/tmp/btvisor-sandbox-canary"
sh_path: .asciz "/bin/sh"

# ---------------------------------------------------------------- user read-write pages
.section .bss.user, "aw", @nobits
.balign 4096
user_data_start:
u_scan_pos: .skip 8
u_kind: .skip 8
vsys_buf: .skip 16
.balign 4096
    .skip 8192
ustack_top:
    .skip 4096
scratch_top:
user_data_end:

.section .data
.align 8
expect_mode: .quad 0
attempt_active: .quad 0
attempt_resume: .quad 0
attempt_ticks: .quad 0
attempts_done: .quad 0
scan_resume: .quad 0
ticks: .quad 0

.section .bss
.align 4096
tables_start:
pml4_a: .skip 4096
pdpt_a: .skip 4096
pd_a: .skip 4096
pt_low: .skip 4096
pdpt_w: .skip 4096
pd_w: .skip 4096
pt_w: .skip 4096
tables_end:
win_frame: .skip 4096
secret_page: .skip 4096
