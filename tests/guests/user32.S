# Ring 3 in 32-bit protected mode with paging: a TSS (ss0/esp0), ring-3 code/data segments and
# iret to ring 3. The user task makes system calls through int $0x80 (DPL-3 gate) and through
# sysenter/sysexit (MSRs 0x174-0x176), prints through them, takes #PF on a supervisor-only page
# (U bit in the error code, CR2) and #GP on hlt, cli, in, out (IOPL 0) and mov %cr0, and leaves
# through a final system call that exits the VM.
# expect-exit: 1
# Syscall ABI: eax = number, ebx = arg1, esi = arg2; result in eax.
#   1 puts(ebx)  2 print "ebx=esi (hex)"  3 arm exception resume at ebx  4 report the last
#   exception (name ebx, reference label esi)  5 exit(ebx)  6 eax = caller CS (and record
#   the kernel stack depth at entry)  7 eax = the depth recorded by the last syscall 6.
#   All other registers are preserved.
.include "multiboot.inc"
.include "serial32.inc"
.include "util32.inc"
.include "idt32.inc"

.section .data
.align 4
entry_depth: .long 0

.section .text
.globl _start
_start:
    mov $stack_top, %esp
    call gdt_init
    call idt_init
    mov $0xff, %al                   # PIC masked
    out %al, $0x21
    out %al, $0xa1
    PUTS "user32\n"
    mov $kstack_top, %eax
    call tss_init
    mov $0x80, %eax
    mov $int80_entry, %ebx
    mov $GATE_INT3, %dl              # DPL 3: callable from ring 3
    call idt_set
    # paging: 0-4 MiB user+supervisor, 4-8 MiB supervisor only (4 MiB pages)
    movl $0x00000000 + 0x87, pd      # P RW US PS
    movl $0x00400000 + 0x83, pd + 4  # P RW PS, U/S = 0
    mov %cr4, %eax
    or $0x10, %eax
    mov %eax, %cr4
    mov $pd, %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80010000, %eax
    mov %eax, %cr0
    movl $0x5eca1e7, 0x400100        # a secret in the supervisor page
    # sysenter MSRs
    mov $0x174, %ecx
    mov $SEL_CODE, %eax
    xor %edx, %edx
    wrmsr
    mov $0x175, %ecx
    mov $sysenter_stack_top, %eax
    wrmsr
    mov $0x176, %ecx
    mov $sysenter_entry, %eax
    wrmsr
    PUTS "entering ring 3\n"
    mov $SEL_UDATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    push $SEL_UDATA                  # ss
    push $user_stack_top             # esp
    push $0x202                      # eflags: IF=1, IOPL=0
    push $SEL_UCODE                  # cs
    push $user_main                  # eip
    iret

# ---- kernel side ----
int80_entry:
    pusha
    push %ds
    push %es
    mov $SEL_DATA, %dx
    mov %dx, %ds
    mov %dx, %es
    mov $kstack_top, %edx            # depth below esp0 at entry (before pusha and 2 pushes)
    sub %esp, %edx
    sub $40, %edx
    cmp $6, %eax                     # recorded by syscall 6, read by syscall 7
    jne 1f
    mov %edx, entry_depth
1:  mov 44(%esp), %edi               # caller CS
    call syscall_dispatch
    mov %eax, 36(%esp)               # returned in the eax slot of pusha
    pop %es
    pop %ds
    popa
    iret

sysenter_entry:
    pusha
    push %ds
    push %es
    mov $SEL_DATA, %dx
    mov %dx, %ds
    mov %dx, %es
    mov $sysenter_stack_top, %edx
    sub %esp, %edx
    sub $40, %edx
    cmp $6, %eax
    jne 1f
    mov %edx, entry_depth
1:  mov $0xffff, %edi                # no caller CS on the stack with sysenter
    call syscall_dispatch
    mov %eax, 36(%esp)
    pop %es
    pop %ds
    popa
    sysexit                          # eip = edx, esp = ecx; IF stays as sysenter left it (0)

# syscall_dispatch: eax = number, ebx/esi = args, edi = caller CS; result in eax.
syscall_dispatch:
    cmp $1, %eax
    je sys_puts
    cmp $2, %eax
    je sys_puthex
    cmp $3, %eax
    je sys_arm
    cmp $4, %eax
    je sys_report
    cmp $5, %eax
    je sys_exit
    cmp $6, %eax
    je sys_cs
    cmp $7, %eax
    je sys_depth
    mov $-1, %eax
    ret
sys_puts:
    push %esi
    mov %ebx, %esi
    call puts
    pop %esi
    xor %eax, %eax
    ret
sys_puthex:
    push %esi
    mov %esi, %eax
    mov %ebx, %esi
    call puts
    pop %esi
    PUTS "="
    call puthex32
    call newline
    xor %eax, %eax
    ret
sys_arm:
    mov %ebx, exc_resume
    xor %eax, %eax
    ret
sys_report:
    push %esi
    mov %ebx, %esi
    call puts
    pop %esi
    PUTS ": "
    push %ebx
    mov %esi, %ebx
    call exc_report
    pop %ebx
    PUTS "  cs="
    mov exc_cs, %eax
    call puthex16
    cmpl $14, exc_vec
    jne 1f
    PUTS " cr2="
    mov exc_cr2, %eax
    call puthex32
1:  call newline
    xor %eax, %eax
    ret
sys_cs:
    mov %edi, %eax
    ret
sys_depth:
    mov entry_depth, %eax
    ret
sys_exit:
    PUTS "exit from ring 3, exceptions="
    mov exc_count, %eax
    call putdec
    call newline
    mov %bl, %al
    call exit

# ---- user side (ring 3) ----
.macro SYS nr, a1=0, a2=0
    mov $\nr, %eax
    mov \a1, %ebx
    mov \a2, %esi
    int $0x80
.endm
.macro UPUTS text
    .pushsection .rodata
9100: .asciz "\text"
    .popsection
    SYS 1, $9100b
.endm
.macro UHEX label, val
    .pushsection .rodata
9101: .asciz "\label"
    .popsection
    push \val
    pop %esi
    mov $2, %eax
    mov $9101b, %ebx
    int $0x80
.endm
# UFAULT name, insn...: arm the resume point, run the instruction, report.
.macro UFAULT name, label
    .pushsection .rodata
9102: .asciz "\name"
    .popsection
    SYS 4, $9102b, $\label
.endm

user_main:
    UPUTS "hello from ring 3\n"
    mov %cs, %eax
    and $3, %eax
    UHEX "cpl", %eax
    SYS 6
    UHEX "int80_caller_cs", %eax
    SYS 7
    UHEX "int80_kstack_depth", %eax  # ss, esp, eflags, cs, eip = 20 bytes below esp0
    pushf
    pop %eax
    and $0x3200, %eax
    UHEX "user_eflags_if_iopl", %eax
    # sysenter / sysexit
    mov $1, %eax
    mov $msg_sysenter, %ebx
    mov $1f, %edx
    mov %esp, %ecx
    sysenter
1:  mov %cs, %eax
    UHEX "cs_after_sysexit", %eax
    mov %ss, %eax
    UHEX "ss_after_sysexit", %eax
    pushf
    pop %eax
    and $0x200, %eax
    UHEX "if_after_sysexit", %eax    # sysenter cleared IF and sysexit does not restore it
    mov $6, %eax
    mov $1f, %edx
    mov %esp, %ecx
    mov %esp, %ebp
    mov $0x600d, %edi
    sysenter
1:  sub %esp, %ebp
    UHEX "sysenter_caller_cs", %eax  # 0xffff: the kernel has no caller CS with sysenter
    UHEX "sysexit_esp_delta", %ebp
    UHEX "sysenter_edi_kept", %edi
    SYS 7
    UHEX "sysenter_kstack_depth", %eax   # esp = IA32_SYSENTER_ESP exactly
    # #PF on the supervisor-only page
    SYS 3, $1f
u_pf_read:
    mov 0x400100, %eax
1:  UFAULT "pf_user_read", u_pf_read
    SYS 3, $1f
u_pf_write:
    movl $0, 0x400104
1:  UFAULT "pf_user_write", u_pf_write
    SYS 3, $1f
u_pf_np:
    mov 0x800000, %eax               # not present
1:  UFAULT "pf_user_np", u_pf_np
    # #GP on privileged instructions at CPL 3 with IOPL 0
    SYS 3, $1f
u_hlt:
    hlt
1:  UFAULT "gp_hlt", u_hlt
    SYS 3, $1f
u_cli:
    cli
1:  UFAULT "gp_cli", u_cli
    SYS 3, $1f
u_in:
    in $0x21, %al
1:  UFAULT "gp_in", u_in
    SYS 3, $1f
    mov $0x3ff, %dx
u_out:
    out %al, %dx
1:  UFAULT "gp_out", u_out
    SYS 3, $1f
u_cr0:
    mov %cr0, %eax
1:  UFAULT "gp_mov_cr0", u_cr0
    SYS 3, $1f
u_int40:
    int $0x40                        # DPL-0 gate from CPL 3: #GP(vector*8 + 2)
1:  UFAULT "gp_int_dpl0", u_int40
    pushf                            # popf at CPL 3, IOPL 0 cannot set IF or IOPL (no fault)
    pop %eax
    or $0x3200, %eax
    push %eax
    popf
    pushf
    pop %eax
    and $0x3200, %eax
    UHEX "popf_ring3_if_iopl", %eax
    UPUTS "ring 3 done\n"
    SYS 5, $0

.section .rodata
msg_sysenter: .asciz "hello through sysenter\n"

.section .bss
.align 4096
pd: .skip 4096
    .skip 4096
kstack_top:
    .skip 4096
sysenter_stack_top:
    .skip 4096
user_stack_top:
    .skip 8192
stack_top:
