# bits: 64
# Ring 3 in long mode: TSS64 rsp0, user segments in the SYSRET layout (STAR), sysretq and iretq
# into ring 3, syscalls through SYSCALL (LSTAR; RCX/R11 checked; FMASK clears IF/TF/DF) and
# through int $0x80 (DPL-3 gate), user faults reported and skipped by the kernel (#PF on a
# supervisor page, #GP on hlt/cli/in/mov cr0, #GP for int3 through a DPL-0 gate then #BP, #UD,
# #DE), demand paging (#PF on a not-present page fixed by mapping it and retrying), a
# compatibility-mode user segment doing int $0x80, and finally an exit syscall.
# expect-exit: 1
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"
.include "ring3_64.inc"

.set SYS_PUTS, 1
.set SYS_PUTHEX, 2
.set SYS_EXIT, 3
.set SYS_CHECK, 4
.set SYS_PHASE2, 5
.set SYS_BPGATE, 6                     # make vector 3 a DPL-3 gate
.set DEMAND_VA, 0x40000000
# user-side helpers (ring 3), printing through SYSCALL: UPUTS, UPUTHEX (ring3_64.inc)

.section .text
main64:
    call idt64_init
    mov $0xff, %al
    out %al, $0x21
    out %al, $0xa1
    PUTS "user64\n"
    # user-accessible mappings: the first 2 MiB (this image) U=1; 2..4 MiB stays supervisor
    orq $4, boot_pml4(%rip)
    orq $4, boot_pdpt(%rip)
    orq $4, boot_pd(%rip)
    mov %cr3, %rax
    mov %rax, %cr3
    TSS64_INIT
    # gates and handlers
    mov $0x80, %edi
    mov $0xEE00, %edx                  # DPL 3 interrupt gate
    call idt_set_attr
    lea int80_handler(%rip), %rax
    mov %rax, exc_handlers+0x80*8(%rip)
    lea user_fault(%rip), %rax
    mov %rax, exc_handlers+0*8(%rip)
    mov %rax, exc_handlers+3*8(%rip)
    mov %rax, exc_handlers+6*8(%rip)
    mov %rax, exc_handlers+13*8(%rip)
    lea pf_handler(%rip), %rax
    mov %rax, exc_handlers+14*8(%rip)
    SYSCALL_INIT
    PUTS "entering ring 3 with sysretq\n"
    lea user_main(%rip), %rcx
    mov $0x202, %r11d
    lea ustack_top(%rip), %rsp
    sysretq

# ---------------------------------------------------------------- kernel side
syscall_entry:
    mov %rsp, sc_user_rsp(%rip)
    lea sc_stack_top(%rip), %rsp
    push %rcx
    push %r11
    mov %rcx, sc_rcx(%rip)
    mov %r11, sc_r11(%rip)
    pushfq
    pop sc_kflags(%rip)
    call sys_dispatch
    pop %r11
    pop %rcx
    mov sc_user_rsp(%rip), %rsp
    sysretq

int80_handler:
    push %rdi
    mov F_CS(%rdi), %rax
    mov %ax, int80_cs(%rip)
    mov F_RAX(%rdi), %rax
    mov F_RDI(%rdi), %rdi
    call sys_dispatch
    pop %rdi
    ret

# sys_dispatch: rax = number, rdi = argument, rdx = expected RCX (SYS_CHECK).
sys_dispatch:
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
1:  cmp $SYS_EXIT, %eax
    jne 1f
    PUTS "exit syscall, code="
    mov %edi, %eax
    call puthex8
    PUTS ", demand frame at 0x601230="
    mov 0x601230, %rax
    call puthex64
    call newline
    mov %dil, %al
    call exit
1:  cmp $SYS_CHECK, %eax
    jne 1f
    PUTS "syscall: rcx==return rip "
    cmp sc_rcx(%rip), %rdx
    sete %al
    call puthex8
    PUTS ", r11&(IF|TF|DF)="
    mov sc_r11(%rip), %rax
    and $0x700, %eax
    call puthex16
    PUTS ", rflags in handler&(IF|TF|DF)="
    mov sc_kflags(%rip), %rax
    and $0x700, %eax
    call puthex16
    call newline
    ret
1:  cmp $SYS_PHASE2, %eax
    jne 1f
    PUTS "iretq to ring 3\n"
    push $UDATA|3
    lea ustack_top(%rip), %rax
    push %rax
    push $0x202
    push $UCODE64|3
    lea user_phase2(%rip), %rax
    push %rax
    iretq
1:  cmp $SYS_BPGATE, %eax
    jne 1f
    push %rdi
    push %rdx
    mov $3, %edi
    mov $0xEE00, %edx
    call idt_set_attr
    pop %rdx
    pop %rdi
    ret
1:  PUTS "bad syscall\n"
    mov $4, %al
    call exit

user_fault:
    mov err_mask(%rip), %eax
    and %rax, F_ERR(%rdi)
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
    mov %cr2, %rax
    cmp $DEMAND_VA, %rax
    jb user_fault
    cmp $DEMAND_VA + 0x200000, %rax
    jae user_fault
    PUTS "demand #PF err="
    mov F_ERR(%rdi), %rax
    call puthex32
    PUTS " cr2="
    mov %cr2, %rax
    call puthex64
    call newline
    lea demand_pd(%rip), %rax
    movq $0x600000 | 0x87, (%rax)      # 2 MiB page, P RW U PS
    or $7, %rax
    mov %rax, boot_pdpt+8(%rip)        # PDPT[1]: VA 1 GiB
    ret                                # (a not-present entry is never cached: no flush needed)

# ---------------------------------------------------------------- user side (ring 3)
user_main:
    UPUTS "hello from ring 3\n"
    mov %cs, %eax
    UPUTHEX "user cs", %rax
    mov %ss, %eax
    UPUTHEX "user ss", %rax
    pushfq
    pop %rax
    and $0x3200, %eax
    UPUTHEX "user IF|IOPL", %rax
    std                                # DF=1 and IF=1 on entry: FMASK clears both
    lea 1f(%rip), %rdx
    mov $SYS_CHECK, %eax
    syscall
1:  pushfq
    cld
    pop %rax
    and $0x600, %eax
    UPUTHEX "flags restored from r11 (IF|DF)", %rax
    mov $0x1234, %rdi
    mov $SYS_PUTHEX, %eax
    int $0x80
    UPUTHEX "int80 saved cs", int80_cs(%rip)
    # faults, each reported and skipped by the kernel
    EXPECT_EXC 1f, 2f
1:  mov 0x200000, %rax                 # supervisor page: #PF err=5 (P, U)
2:  EXPECT_EXC 1f, 2f
1:  movb $0, 0x200010                  # write: err=7
2:  EXPECT_EXC 1f, 2f
1:  hlt                                # #GP(0)
2:  EXPECT_EXC 1f, 2f
1:  cli                                # #GP(0): IOPL 0 < CPL 3
2:  EXPECT_EXC 1f, 2f
1:  in $0x71, %al                      # #GP(0): no I/O bitmap
2:  EXPECT_EXC 1f, 2f
1:  mov %cr0, %rax                     # #GP(0)
    # int n through a DPL-0 gate: #GP(vector * 8 + 2) per the SDM; QEMU 7.2 TCG reports
    # vector * 16 + 2, so only the low 3 bits (IDT=1, EXT=0) are printed
2:  movl $7, err_mask(%rip)
    EXPECT_EXC 1f, 2f
1:  int3                               # #GP(0x1a)
2:  EXPECT_EXC 1f, 2f
1:  int $0x40                          # #GP(0x202)
2:  movl $-1, err_mask(%rip)
    mov $SYS_BPGATE, %eax
    syscall
    EXPECT_EXC 1f, 2f
1:  int3                               # DPL-3 gate now: #BP, RIP after the int3
2:  EXPECT_EXC 1f, 2f
1:  ud2                                # #UD
2:  EXPECT_EXC 1f, 2f
    xor %ecx, %ecx
1:  div %ecx                           # #DE
2:  mov $SYS_PHASE2, %eax
    syscall
    UPUTS "not reached\n"

user_phase2:
    UPUTS "ring 3 again\n"
    # demand paging: the kernel maps the page and the write is retried
    mov $DEMAND_VA + 0x1230, %rbx
    movq $0xd00d, (%rbx)
    mov (%rbx), %rax
    UPUTHEX "demand page value", %rax
    # compatibility-mode user code segment
    ljmp *ucompat_ptr(%rip)
.code32
ucompat:
    mov $SYS_PUTS, %eax
    mov $compat_msg, %edi
    int $0x80
    ljmp $UCODE64|3, $ucompat_back
.code64
ucompat_back:
    UPUTHEX "int80 saved cs", int80_cs(%rip)
    mov %cs, %eax
    UPUTHEX "back in cs", %rax
    mov $0, %edi
    mov $SYS_EXIT, %eax
    syscall
    ud2

.section .rodata
compat_msg: .asciz "int 0x80 from compatibility mode\n"
.section .data
.align 8
ucompat_ptr: .long ucompat
    .word UCODE32|3
sc_rcx: .quad 0
sc_r11: .quad 0
sc_kflags: .quad 0
int80_cs: .quad 0
err_mask: .long -1

.section .bss
.align 4096
demand_pd: .skip 4096
.align 16
    .skip 4096
ustack_top:
