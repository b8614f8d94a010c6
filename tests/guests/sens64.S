# bits: 64
# Sensitive and privileged instructions in 64-bit mode, printing what the hardware returns for
# the state this guest set up itself: pushfq/popfq, cli/sti, sgdt/sidt, lldt/ltr/sldt/str with
# 16-byte system descriptors, smsw/lmsw/clts, mov CRn/DRn (CR8 = TPR), lar/lsl/verr/verw,
# segment register moves, swapgs and the FS/GS base MSRs, STAR/LSTAR/CSTAR/FMASK round trips,
# far jmp/call/ret through memory, a trip through a compatibility-mode code segment (with an
# interrupt taken there), int n/iretq, CPUID facts, rdtsc/rdtscp ordering, xgetbv, in/out,
# wbinvd/invd/invlpg.
# expect-exit: 1
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"

.set MSR_STAR, 0xC0000081
.set MSR_LSTAR, 0xC0000082
.set MSR_CSTAR, 0xC0000083
.set MSR_FMASK, 0xC0000084
.set MSR_FS_BASE, 0xC0000100
.set MSR_GS_BASE, 0xC0000101
.set MSR_KGS_BASE, 0xC0000102

# RDMSR64 msr: %rax = MSR (edx:eax combined). Clobbers rcx, rdx.
.macro RDMSR64 msr
    mov $\msr, %ecx
    rdmsr
    shl $32, %rdx
    or %rdx, %rax
.endm
# WRMSR64 msr, reg: MSR = reg. Clobbers rax, rcx, rdx.
.macro WRMSR64 msr, reg
    mov \reg, %rax
    mov %rax, %rdx
    shr $32, %rdx
    mov $\msr, %ecx
    wrmsr
.endm

.section .text
main64:
    call idt64_init
    mov $0xff, %al                     # mask the PICs: IF=1 stays quiet
    out %al, $0x21
    out %al, $0xa1
    PUTS "sens64\n"

    # --- pushfq / popfq
    push $0x247ed5                     # CF PF AF ZF SF DF OF IOPL=3 NT AC ID
    popfq
    pushfq
    pop %rax
    push $2
    popfq
    PUTHEX "popfq/pushfq", %rax
    push $0x30002                      # RF and VM: popfq clears RF, leaves VM unchanged (0)
    popfq
    pushfq
    pop %rax
    PUTHEX "popfq rf|vm", %rax
    sti
    pushfq
    cli
    pop %rax
    and $0x200, %eax
    PUTHEX32 "IF after sti", %eax
    pushfq
    pop %rax
    and $0x200, %eax
    PUTHEX32 "IF after cli", %eax

    # --- sgdt / sidt (10 bytes in 64-bit mode)
    movq $-1, dtbuf(%rip)
    movq $-1, dtbuf+8(%rip)
    sgdt dtbuf(%rip)
    PUTHEX16 "gdt limit", dtbuf(%rip)
    mov dtbuf+2(%rip), %rax
    lea gdt64(%rip), %rdx
    sub %rdx, %rax
    PUTHEX "gdt base - gdt64", %rax
    PUTHEX16 "byte 10..11 untouched", dtbuf+10(%rip)
    sidt dtbuf(%rip)
    PUTHEX16 "idt limit", dtbuf(%rip)
    mov dtbuf+2(%rip), %rax
    lea idt64(%rip), %rdx
    sub %rdx, %rax
    PUTHEX "idt base - idt64", %rax

    # --- lldt / ltr with 16-byte descriptors; sldt / str
    mov $LDT_SEL, %edi
    lea ldt(%rip), %rsi
    mov $15, %edx
    mov $0x82, %ecx
    call gdt_set_sys
    mov $TSS_SEL, %edi
    lea tss64(%rip), %rsi
    mov $103, %edx
    mov $0x89, %ecx
    call gdt_set_sys
    mov $LDT_SEL, %ax
    lldt %ax
    mov $TSS_SEL, %ax
    ltr %ax
    mov $-1, %rax
    sldt %rax
    PUTHEX "sldt", %rax
    mov $-1, %rax
    str %rax
    PUTHEX "str", %rax
    movw $0xffff, dtbuf(%rip)
    str dtbuf(%rip)
    PUTHEX16 "str m16", dtbuf(%rip)
    PUTHEX8 "tss access after ltr (busy)", gdt64+TSS_SEL+5(%rip)
    mov $0x0c, %eax                    # LDT entry 1 (TI=1)
    mov %eax, %es
    mov %es, %rax
    PUTHEX "es from ldt", %rax
    mov %es:ldt_probe, %eax            # the LDT data segment is flat
    PUTHEX32 "read through es", %eax
    mov $KDATA, %eax
    mov %eax, %es

    # --- CR0: smsw / lmsw / clts
    mov $0x80050033, %eax              # PG AM WP NE ET MP PE
    mov %rax, %cr0
    mov %cr0, %rax
    PUTHEX "cr0", %rax
    mov $-1, %rax
    smsw %rax
    PUTHEX "smsw r64", %rax
    movq $-1, dtbuf(%rip)
    smsw dtbuf(%rip)
    PUTHEX "smsw m16 (qword)", dtbuf(%rip)
    mov $0x000e, %ax                   # lmsw: sets MP EM TS, cannot clear PE
    lmsw %ax
    mov %cr0, %rax
    PUTHEX "cr0 after lmsw e", %rax
    clts
    mov %cr0, %rax
    PUTHEX "cr0 after clts", %rax
    mov $0x80050033, %eax
    mov %rax, %cr0

    # --- CR2, CR3, CR4, CR8
    mov $0xfedcba9876543210, %rax
    mov %rax, %cr2
    mov %cr2, %rdx
    PUTHEX "cr2", %rdx
    mov %cr3, %rax
    lea boot_pml4(%rip), %rdx
    sub %rdx, %rax
    PUTHEX "cr3 - boot_pml4", %rax
    mov $0x6a0, %eax                   # OSXMMEXCPT OSFXSR PGE PAE
    mov %rax, %cr4
    mov %cr4, %rax
    PUTHEX "cr4", %rax
    mov $5, %eax
    mov %rax, %cr8
    mov %cr8, %rax
    PUTHEX "cr8", %rax
    xor %eax, %eax
    mov %rax, %cr8

    # --- debug registers (no breakpoint ever matches: addresses never executed)
    mov $0x1000, %eax
    mov %rax, %dr0
    mov $0x2000, %eax
    mov %rax, %dr1
    mov $0xffffffff80003000, %rax
    mov %rax, %dr2
    mov $0x00007ffffffff000, %rax
    mov %rax, %dr3
    mov %dr0, %rax
    PUTHEX "dr0", %rax
    mov %dr1, %rax
    PUTHEX "dr1", %rax
    mov %dr2, %rax
    PUTHEX "dr2", %rax
    mov %dr3, %rax
    PUTHEX "dr3", %rax
    mov $0x155, %eax                   # L0..L3, LE (execute breakpoints)
    mov %rax, %dr7
    mov %dr7, %rax
    PUTHEX "dr7", %rax
    xor %eax, %eax
    mov %rax, %dr7
    mov %dr7, %rax
    PUTHEX "dr7 cleared", %rax

    # --- lar / lsl / verr / verw
    mov $KCODE64, %ecx
    mov $-1, %rax
    lar %rcx, %rax
    PUTHEX "lar kcode64", %rax
    mov $UCODE32|3, %ecx
    lar %ecx, %eax
    PUTHEX32 "lar ucode32", %eax
    mov $KDATA, %ecx
    lsl %ecx, %eax
    PUTHEX32 "lsl kdata", %eax
    mov $TSS_SEL, %ecx
    lar %ecx, %eax
    PUTHEX32 "lar tss", %eax
    lsl %ecx, %eax
    PUTHEX32 "lsl tss", %eax
    mov $LDT_SEL, %ecx
    lsl %ecx, %eax
    PUTHEX32 "lsl ldt", %eax
    mov $0x12345678, %eax
    xor %ecx, %ecx
    lar %ecx, %eax                     # null: ZF=0, destination unchanged
    setz %cl
    PUTHEX8 "lar null ZF", %cl
    PUTHEX32 "lar null dest", %eax
    mov $0xfff8, %ecx
    lsl %ecx, %eax                     # beyond the limit: ZF=0
    setz %cl
    PUTHEX8 "lsl beyond ZF", %cl
    mov $0x38, %ecx                    # the spare null slot
    lar %ecx, %eax
    setz %cl
    PUTHEX8 "lar spare ZF", %cl
    xor %ebx, %ebx
    mov $KCODE64, %ecx
    verr %cx
    setz %bl
    shl $4, %ebx
    verw %cx
    setz %al
    or %al, %bl
    shl $4, %ebx
    mov $KDATA, %ecx
    verw %cx
    setz %al
    or %al, %bl
    shl $4, %ebx
    mov $UDATA|3, %ecx
    verr %cx
    setz %al
    or %al, %bl
    shl $4, %ebx
    mov $0, %ecx
    verr %cx
    setz %al
    or %al, %bl
    PUTHEX32 "verr kc, verw kc, verw kd, verr ud, verr null", %ebx

    # --- segment registers: mov / push / pop
    mov $-1, %rax
    mov %ds, %rax
    PUTHEX "mov ds->r64", %rax
    mov $-1, %rax
    mov %cs, %eax
    PUTHEX "mov cs->r32", %rax
    mov $UDATA|3, %eax
    mov %eax, %gs
    push %gs
    pop %rax
    PUTHEX "push gs", %rax
    push $KDATA
    pop %gs
    mov %gs, %eax
    PUTHEX32 "pop gs", %eax
    mov %rsp, %rbx
    push %fs
    sub %rsp, %rbx
    pop %rax
    PUTHEX "push fs size", %rbx
    EXPECT_EXC 1f, 2f
1:  .byte 0x1e                         # push %ds: invalid in 64-bit mode
2:
    # --- FS/GS bases, swapgs
    lea fsdata(%rip), %rbx
    WRMSR64 MSR_FS_BASE, %rbx
    lea gsdata1(%rip), %rbx
    WRMSR64 MSR_GS_BASE, %rbx
    lea gsdata2(%rip), %rbx
    WRMSR64 MSR_KGS_BASE, %rbx
    mov %fs:8, %rax
    PUTHEX "fs:8", %rax
    mov %gs:0, %rax
    PUTHEX "gs:0", %rax
    swapgs
    mov %gs:0, %rax
    PUTHEX "gs:0 after swapgs", %rax
    RDMSR64 MSR_GS_BASE
    lea gsdata2(%rip), %rbx
    sub %rbx, %rax
    PUTHEX "GS_BASE - gsdata2", %rax
    RDMSR64 MSR_KGS_BASE
    lea gsdata1(%rip), %rbx
    sub %rbx, %rax
    PUTHEX "KERNEL_GS_BASE - gsdata1", %rax
    swapgs
    mov %gs:0, %rax
    PUTHEX "gs:0 swapped back", %rax
    mov $KDATA, %eax
    mov %eax, %fs                      # loading a selector reloads the base from the GDT (0)
    RDMSR64 MSR_FS_BASE
    PUTHEX "FS_BASE after mov fs", %rax
    lea fsdata(%rip), %rbx
    mov $0xffff800000000000, %rax      # bases are 64-bit: addressing wraps mod 2^64
    add %rax, %rbx
    WRMSR64 MSR_FS_BASE, %rbx
    mov $0x800000000000, %rbx
    mov %fs:8(%rbx), %rax
    PUTHEX "fs: high base + offset", %rax
    xor %ebx, %ebx
    WRMSR64 MSR_FS_BASE, %rbx

    # --- syscall MSRs round trip
    mov $0x0023000812345678, %rbx
    WRMSR64 MSR_STAR, %rbx
    mov $0xffffffff81000000, %rbx
    WRMSR64 MSR_LSTAR, %rbx
    mov $0x00007fff12345678, %rbx
    WRMSR64 MSR_CSTAR, %rbx
    mov $0x47700, %rbx
    WRMSR64 MSR_FMASK, %rbx
    RDMSR64 MSR_STAR
    PUTHEX "star", %rax
    RDMSR64 MSR_LSTAR
    PUTHEX "lstar", %rax
    RDMSR64 MSR_CSTAR
    PUTHEX "cstar", %rax
    RDMSR64 MSR_FMASK
    PUTHEX "fmask", %rax
    RDMSR64 MSR_EFER
    PUTHEX "efer", %rax

    # --- far jmp / call / ret through memory
    lea fj_target(%rip), %rax
    mov %eax, farptr(%rip)
    movw $KCODE64, farptr+4(%rip)
    ljmp *farptr(%rip)                 # m16:32
fj_back:
    lea fc_target(%rip), %rax
    mov %eax, farptr(%rip)
    mov %rsp, %rbx
    lcall *farptr(%rip)                # m16:32: pushes CS and EIP as two 32-bit slots
fc_after:
    PUTHEX32 "lcall slot eip ok", %eax
    PUTHEX "lcall pushed bytes", %r12
    PUTHEX16 "lcall pushed cs", %r13w
    push $KCODE64                      # lretq: 8-byte RIP and CS
    lea 1f(%rip), %rax
    push %rax
    lretq
    PUTS "not reached\n"
1:  PUTS "lretq ok\n"

    # --- compatibility mode: far jmp to the 32-bit code segment and back
    lea int50_handler(%rip), %rax
    mov %rax, exc_handlers+0x50*8(%rip)
    lea compat_code(%rip), %rax
    mov %eax, farptr(%rip)
    movw $KCODE32, farptr+4(%rip)
    mov %rsp, saved_rsp(%rip)
    mov $0x11223344aabbccdd, %rbx
    mov $0x5566778800000000, %r9
    ljmp *farptr(%rip)
.code32
compat_code:
    mov $5, %eax
    .byte 0x48                         # dec %eax here (a REX.W prefix in 64-bit mode)
    add $0x100, %eax                   # 0x104
    push %eax
    pop %edx                           # 4-byte push/pop
    mov %esp, %ecx
    push %ecx
    sub %esp, %ecx                     # 4
    pop %esi
    int $0x50                          # interrupt from compatibility mode into 64-bit IDT
    mov %cs, %edi
    ljmp $KCODE64, $compat_back
.code64
compat_back:
    # (the upper halves of the GPRs are undefined after a trip through a 32-bit mode:
    # only low 32 bits are printed)
    PUTHEX32 "compat eax", %eax
    PUTHEX32 "compat edx", %edx
    PUTHEX32 "compat push size", %ecx
    PUTHEX32 "compat cs", %edi
    PUTHEX32 "ebx kept", %ebx
    PUTHEX16 "int50 saved cs", int50_cs(%rip)
    mov saved_rsp(%rip), %rax
    sub %rsp, %rax
    PUTHEX32 "rsp delta", %eax

    # --- int n / iretq
    int $0x50
    PUTHEX16 "int50 saved cs", int50_cs(%rip)
    mov %rsp, %rbx                     # iretq to a same-privilege target
    push $KDATA
    push %rbx
    push $0x0c3                        # RFLAGS: CF ZF SF + bit 1
    push $KCODE64
    lea 1f(%rip), %rax
    push %rax
    iretq
1:  pushfq
    pop %rax
    PUTHEX "rflags after iretq", %rax
    push $2
    popfq

    # --- CPUID: architectural facts only
    xor %eax, %eax
    cpuid
    cmp $1, %eax
    setae %al
    PUTHEX8 "cpuid max>=1", %al
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    setae %al
    PUTHEX8 "cpuid ext max>=80000001", %al
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    setc %al
    PUTHEX8 "cpuid LM", %al
    mov $1, %eax
    cpuid
    mov %edx, %eax
    and $0x60, %eax                    # MSR, PAE
    PUTHEX32 "cpuid 1 edx msr|pae", %eax

    # --- TSC ordering (values are host dependent: only comparisons are printed)
    mov $-1, %rax
    mov $-1, %rdx
    rdtsc
    mov %rax, %r8
    or %rdx, %rax
    shr $32, %rax
    PUTHEX "rdtsc upper halves", %rax
    shl $32, %rdx
    or %rdx, %r8
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    cmp %r8, %rax
    seta %al
    PUTHEX8 "rdtsc increases", %al
    mov $0x80000001, %eax
    cpuid
    mov $1, %al
    bt $27, %edx
    jnc 1f
    rdtscp
    shl $32, %rdx
    or %rdx, %rax
    cmp %r8, %rax
    seta %al
1:  PUTHEX8 "rdtscp increases (or absent)", %al

    # --- XSAVE: XCR0 bit 0 (x87) is always 1 once CR4.OSXSAVE is set
    mov $1, %eax
    cpuid
    mov $1, %al
    bt $26, %ecx
    jnc 1f
    mov %cr4, %rax
    bts $18, %rax
    mov %rax, %cr4
    xor %ecx, %ecx
    xgetbv
    and $1, %eax
1:  PUTHEX8 "xcr0 x87 (or no xsave)", %al

    # --- in/out: UART scratch register
    mov $0x3ff, %dx
    mov $0x5a, %al
    out %al, %dx
    xor %eax, %eax
    in %dx, %al
    PUTHEX32 "uart scr", %eax

    # --- cache and TLB maintenance
    wbinvd
    invd
    invlpg (%rsp)
    PUTS "wbinvd invd invlpg ok\n"

    PUTS "done\n"
    mov $0, %al
    call exit

fj_target:
    PUTS "ljmp m16:32 ok\n"
    jmp fj_back

fc_target:
    mov %rbx, %r12
    sub %rsp, %r12                     # bytes pushed by the far call
    movzwl 4(%rsp), %r13d              # the CS slot
    mov (%rsp), %eax
    lea fc_after(%rip), %rdx
    cmp %edx, %eax
    sete %al
    movzbl %al, %eax
    lretl                              # 32-bit far return: pops EIP and CS (4 bytes each)

int50_handler:
    mov F_CS(%rdi), %rax
    mov %ax, int50_cs(%rip)
    ret

.section .data
.align 16
ldt:
    .quad 0
    .quad 0x00CF93000000FFFF           # LDT entry 1: flat data, DPL 0
tss64: .skip 104
ldt_probe: .long 0x1d7cafe
.align 8
dtbuf: .quad 0, 0
farptr: .long 0
    .word 0
saved_rsp: .quad 0
int50_cs: .word 0
.align 8
fsdata: .quad 0xf5f5f5f5f5f5f5f0, 0xf5f5f5f5f5f5f5f8
gsdata1: .quad 0x1111111111111111
gsdata2: .quad 0x2222222222222222
