# Sensitive and privileged instructions in 32-bit protected mode at CPL 0, printing what the
# hardware returns for the state this guest set up itself: EFLAGS (IF, IOPL, AC, ID), cli/sti,
# sgdt/sidt/sldt/str (and the TSS busy bit), smsw/lmsw/clts, control and debug registers,
# lar/lsl/verr/verw, segment register loads (a segment with base 0x1000), far jmp/call/ret,
# int n/iret, cpuid/rdtsc (host-independent facts only), sysenter MSRs, port I/O, wbinvd/invd.
# expect-exit: 1
.include "multiboot.inc"
.include "serial32.inc"
.include "util32.inc"
.include "idt32.inc"

.set SEL_CODE2, SEL_SPARE            # 0x30: second flat ring-0 code segment
.set SEL_BASE1K, SEL_SPARE + 8       # 0x38: data, base 0x1000, limit 0xfff
.set SEL_LDT, SEL_SPARE + 16         # 0x40: LDT descriptor
.set SEL_CONF3, SEL_SPARE + 24       # 0x48: conforming code, DPL 3

.section .data
.align 8
ldt:
    .quad 0x00cf93000000ffff         # LDT 0 (selector 0x04): flat data
    .quad 0x00cf9b000000ffff         # LDT 1 (selector 0x0c): flat code
ldt_end:
.align 4
dtr_buf: .skip 8
farptr: .long far_target2
        .word SEL_CODE2
sels: .word 0x00, 0x08, 0x10, 0x13, 0x1b, 0x23, 0x28, 0x30, 0x38, 0x3b, 0x40, 0x48, 0x4b, 0x04, 0x0c, 0x80
sels_end:
iobuf: .ascii "xyz!"

.section .text
.globl _start
_start:
    mov $stack_top, %esp
    call gdt_init
    call idt_init
    mov $0xff, %al                   # mask the PIC: no interrupts arrive
    out %al, $0x21
    out %al, $0xa1
    PUTS "sens32\n"
    # extra descriptors
    movl $0x0000ffff, gdt32 + SEL_CODE2
    movl $0x00cf9b00, gdt32 + SEL_CODE2 + 4
    movl $0x10000fff, gdt32 + SEL_BASE1K
    movl $0x00409300, gdt32 + SEL_BASE1K + 4
    mov $ldt, %eax
    shl $16, %eax
    or $(ldt_end - ldt - 1), %eax
    mov %eax, gdt32 + SEL_LDT
    mov $ldt, %eax
    mov %eax, %edx
    shr $16, %eax
    and $0xff, %eax
    and $0xff000000, %edx
    or %edx, %eax
    or $0x00008200, %eax             # present, DPL 0, LDT
    mov %eax, gdt32 + SEL_LDT + 4
    movl $0x0000ffff, gdt32 + SEL_CONF3
    movl $0x00cfff00, gdt32 + SEL_CONF3 + 4   # present, DPL 3, conforming readable code (accessed)

    # ---- EFLAGS ----
    cli
    pushf
    pop %eax
    and $0x200, %eax
    PUTHEX "cli_if", %eax
    sti
    pushf
    pop %eax
    and $0x200, %eax
    PUTHEX "sti_if", %eax
    pushf
    andl $~0x200, (%esp)
    popf                             # popf clears IF at CPL 0
    pushf
    pop %eax
    and $0x200, %eax
    PUTHEX "popf_if0", %eax
    pushf
    orl $0x3200, (%esp)              # IF=1, IOPL=3
    popf
    pushf
    pop %eax
    and $0x3200, %eax
    PUTHEX "popf_if1_iopl3", %eax
    pushf
    andl $~0x3000, (%esp)
    popf
    pushf
    pop %eax
    and $0x3000, %eax
    PUTHEX "popf_iopl0", %eax
    pushf
    orl $0x40000, (%esp)             # AC
    popf
    pushf
    pop %eax
    and $0x40000, %eax
    PUTHEX "popf_ac1", %eax
    pushf
    andl $~0x40000, (%esp)
    popf
    pushf
    pop %eax
    and $0x40000, %eax
    PUTHEX "popf_ac0", %eax
    pushf                            # ID toggles on every CPU with CPUID
    pop %eax
    mov %eax, %ebx
    xor $0x200000, %eax
    push %eax
    popf
    pushf
    pop %eax
    xor %ebx, %eax
    and $0x200000, %eax
    PUTHEX "id_toggled", %eax
    push %ebx
    popf
    pushf
    orl $0x20000, (%esp)             # VM cannot be set by popf
    popf
    pushf
    pop %eax
    and $0x20002, %eax               # VM clear, reserved bit 1 always set
    PUTHEX "popf_vm", %eax
    cli

    # ---- descriptor table registers ----
    sgdt dtr_buf
    movzwl dtr_buf, %eax
    PUTHEX "sgdt_limit", %eax
    mov dtr_buf+2, %eax
    sub $gdt32, %eax
    PUTHEX "sgdt_base_rel", %eax
    sidt dtr_buf
    movzwl dtr_buf, %eax
    PUTHEX "sidt_limit", %eax
    mov dtr_buf+2, %eax
    sub $idt32, %eax
    PUTHEX "sidt_base_rel", %eax
    xor %eax, %eax
    sldt %ax
    PUTHEX "sldt_initial", %eax
    mov $SEL_LDT, %ax
    lldt %ax
    mov $0xffffffff, %eax
    sldt %eax                        # 32-bit register form zero-extends on P6 and later
    PUTHEX "sldt", %eax
    mov $tss_stack_top, %eax
    call tss_init
    movb gdt32 + SEL_TSS + 5, %al
    PUTHEX8 "tss_type_after_ltr", %eax
    xor %eax, %eax
    str %ax
    PUTHEX "str", %eax
    movw $0x5555, dtr_buf
    str dtr_buf
    movzwl dtr_buf, %eax
    PUTHEX "str_mem", %eax
    mov $0x04, %ax                   # LDT data selector
    mov %ax, %gs
    movl $0x600df00d, scratch
    mov %gs:scratch, %eax
    PUTHEX "ldt_gs_read", %eax
    mov %ds, %ax
    mov %ax, %gs

    # ---- CR0 / MSW ----
    mov %cr0, %eax
    and $0x1ffffff0, %eax            # keep PE/MP/EM/TS off... start from PE|ET only
    or $0x00000011, %eax
    and $~0x0000000e, %eax
    mov %eax, %cr0
    xor %eax, %eax
    smsw %ax
    PUTHEX16 "smsw", %eax
    mov $0x000a, %ax                 # MP | TS (PE stays 1: lmsw cannot clear it)
    lmsw %ax
    mov %cr0, %eax
    and $0xf, %eax
    PUTHEX "lmsw_cr0", %eax
    clts
    mov %cr0, %eax
    and $0xf, %eax
    PUTHEX "clts_cr0", %eax
    xor %eax, %eax
    lmsw %ax                         # clears MP, keeps PE
    smsw %eax
    and $0xffff, %eax
    PUTHEX "lmsw0_msw", %eax
    mov %cr0, %eax
    or $0x00040000, %eax             # AM
    mov %eax, %cr0
    mov %cr0, %eax
    and $0x00040000, %eax
    PUTHEX "cr0_am", %eax
    mov %cr0, %eax
    and $~0x00040000, %eax
    mov %eax, %cr0
    # ---- CR2 / CR3 / CR4 ----
    mov $0x12345678, %eax
    mov %eax, %cr2
    mov %cr2, %ebx
    PUTHEX "cr2", %ebx
    mov $page_dir, %eax
    or $0x18, %eax                   # PWT | PCD
    mov %eax, %cr3
    mov %cr3, %ebx
    sub $page_dir, %ebx
    PUTHEX "cr3_rel", %ebx
    mov $0x00000010, %eax            # PSE only
    mov %eax, %cr4
    mov %cr4, %eax
    PUTHEX "cr4_pse", %eax
    mov $0x00000090, %eax            # PSE | PGE
    mov %eax, %cr4
    mov %cr4, %eax
    PUTHEX "cr4_pse_pge", %eax
    xor %eax, %eax
    mov %eax, %cr4
    mov %cr4, %eax
    PUTHEX "cr4_0", %eax
    # ---- debug registers ----
    mov $0x00100000, %eax
    mov %eax, %dr0
    mov $0x00200004, %eax
    mov %eax, %dr1
    mov $0xfffffff8, %eax
    mov %eax, %dr2
    mov $0x12345678, %eax
    mov %eax, %dr3
    mov $0x000f0000, %eax            # RW0/LEN0 set, no breakpoint enabled
    mov %eax, %dr7
    mov %dr0, %eax
    PUTHEX "dr0", %eax
    mov %dr1, %eax
    PUTHEX "dr1", %eax
    mov %dr2, %eax
    PUTHEX "dr2", %eax
    mov %dr3, %eax
    PUTHEX "dr3", %eax
    mov %dr7, %eax
    PUTHEX "dr7", %eax               # bit 10 reads as 1
    xor %eax, %eax
    mov %eax, %dr7

    # ---- lar / lsl / verr / verw ----
    mov $sels, %esi
1:  movzwl (%esi), %ebx
    PUTS "sel="
    mov %ebx, %eax
    call puthex16
    PUTS " lar="
    mov $0xdeadbeef, %eax
    lar %bx, %eax                    # ZF=0 leaves the destination unchanged
    setz %cl
    call putzf_val_lar
    PUTS " lsl="
    mov $0xdeadbeef, %eax
    lsl %bx, %eax
    setz %cl
    call putzf_val
    PUTS " verr="
    verr %bx
    setz %al
    call puthex8
    PUTS " verw="
    verw %bx
    setz %al
    call puthex8
    call newline
    add $2, %esi
    cmp $sels_end, %esi
    jb 1b
    movb gdt32 + SEL_TSS + 5, %al
    PUTHEX8 "tss_type_after_lar", %eax

    # ---- segment registers ----
    movl $0xfeedface, 0x1010         # physical 0x1010 = SEL_BASE1K:0x10
    mov $SEL_BASE1K, %ax
    mov %ax, %fs
    mov %fs:0x10, %eax
    PUTHEX "fs_base_read", %eax
    movl $0x0badcafe, %fs:0x14
    mov 0x1014, %eax
    PUTHEX "fs_base_write", %eax
    push %fs
    pop %gs
    mov %gs:0x10, %eax
    PUTHEX "gs_from_fs", %eax
    mov %gs, %eax
    movzwl %ax, %eax
    PUTHEX "gs_sel", %eax
    push $SEL_DATA
    pop %es
    mov %es, %ax
    PUTHEX16 "es_sel", %eax
    push %ss
    pop %ss
    mov %ss, %ax
    PUTHEX16 "ss_sel", %eax
    mov $0x13, %eax                  # RPL 3 data selector into DS at CPL 0 (DPL 0 < RPL)
    EXPECT_FAULT 1f
    mov %ax, %ds
1:  PUTHEX "ds_rpl3_vec", exc_vec
    PUTHEX "ds_rpl3_err", exc_err
    xor %eax, %eax
    mov %ax, %fs                     # a null selector is allowed in fs/gs
    mov %fs, %eax
    PUTHEX16 "fs_null", %eax
    movl $0, exc_vec                 # QEMU TCG does not fault here (hardware does, SDM Vol. 3,
    EXPECT_FAULT 1f                  # 3.4.2); exc_count below counts this fault (3, QEMU says 2)
    mov %fs:0, %eax                  # ... but using it faults
1:  PUTHEX "fs_null_use_vec", exc_vec
    mov %ds, %ax
    mov %ax, %fs

    # ---- far control transfers ----
    ljmp $SEL_CODE2, $far_target
far_back:
    PUTHEX16 "cs_after_ljmp", %ebx
    lcall $SEL_CODE, $far_func
    PUTHEX "lcall_eax", %eax
    mov %cs, %ebx
    PUTHEX16 "cs_after_lret", %ebx
    mov %esp, %edi
    push $0x1111
    push $0x2222
    lcall $SEL_CODE2, $far_func_ret8
    mov %edi, %ecx
    sub %esp, %ecx
    PUTHEX "lret8_eax", %eax
    PUTHEX "lret8_depth", %ecx
    lcall *farptr
    PUTHEX16 "lcall_mem_cs", %eax
    mov $farptr, %ebx
    ljmp *(%ebx)
far_back2:
    PUTHEX16 "ljmp_mem_cs", %eax
    ljmp $SEL_CODE, $1f
1:  mov %cs, %eax
    PUTHEX16 "cs_final", %eax
    # ---- int n / iret ----
    movl $1, exc_resume
    int $0x40
    movl $0, exc_resume
    PUTHEX "int40_vec", exc_vec
    PUTHEX16 "int40_cs", exc_cs
    pushf
    push $SEL_CODE2
    push $1f
    iret
1:  mov %cs, %eax
    PUTHEX16 "iret_cs", %eax
    pushf
    push $SEL_CODE
    push $1f
    iret
1:
    # ---- cpuid / rdtsc ----
    xor %eax, %eax
    cpuid
    test %eax, %eax
    setnz %al
    PUTHEX8 "cpuid0_max_nonzero", %eax
    mov $1, %eax
    cpuid
    and $1, %edx
    PUTHEX "cpuid1_fpu", %edx
    rdtsc
    mov %eax, %esi
    mov %edx, %edi
    rdtsc
    sub %esi, %eax
    sbb %edi, %edx
    setns %al
    PUTHEX8 "rdtsc_monotonic", %eax
    # ---- sysenter MSRs ----
    mov $0x174, %ecx
    mov $0x08, %eax
    xor %edx, %edx
    wrmsr
    mov $0x175, %ecx
    mov $0x12345678, %eax
    wrmsr
    mov $0x176, %ecx
    mov $0x9abcdef0, %eax
    wrmsr
    mov $0x174, %ecx
1:  rdmsr
    PUTS "msr "
    push %eax
    mov %ecx, %eax
    call puthex16
    PUTS "="
    mov %edx, %eax
    call puthex32
    PUTS ":"
    pop %eax
    call puthex32
    call newline
    inc %ecx
    cmp $0x177, %ecx
    jb 1b
    # ---- port I/O (UART scratch register) ----
    mov $0x3ff, %dx
    mov $0x5a, %al
    out %al, %dx
    xor %eax, %eax
    in %dx, %al
    PUTHEX8 "scratch", %eax
    mov $iobuf, %esi
    mov $2, %ecx
    rep outsb                        # the last byte written stays
    in %dx, %al
    PUTHEX8 "outsb_scratch", %eax
    movl $0, scratch
    mov $scratch+1, %edi
    mov $1, %ecx
    rep insb
    mov scratch, %eax
    PUTHEX "insb", %eax
    mov %esi, %eax
    sub $iobuf, %eax
    PUTHEX "outsb_esi", %eax
    mov $0xa5, %al
    out %al, %dx
    mov $scratch, %edi
    insb
    movzbl scratch, %eax
    PUTHEX8 "insb1", %eax
    mov $0xfe, %al                   # PIC IMR round trip through the imm8 port forms
    out %al, $0x21
    in $0x21, %al
    PUTHEX8 "pic_imr", %eax
    mov $0xff, %al
    out %al, $0x21
    # ---- cache and TLB maintenance ----
    wbinvd
    invd
    invlpg 0x12345000
    PUTS "wbinvd/invd/invlpg ok\n"
    PUTHEX "exc_count", exc_count
    PUTS "done\n"
    mov $0, %al
    call exit

# putzf_val_lar: %cl = ZF, %eax = result: print "Z:VVVVVVVV" (LAR bits 19:16 masked: undefined).
putzf_val_lar:
    test %cl, %cl
    jz putzf_val
    and $0x00f0ff00, %eax
putzf_val:
    push %eax
    movzbl %cl, %eax
    call puthex8
    PUTS ":"
    pop %eax
    call puthex32
    ret

far_target:
    mov %cs, %ebx
    ljmp $SEL_CODE, $far_back
far_target2:
    mov %cs, %eax
    ljmp $SEL_CODE, $far_back2
far_func:
    mov %cs, %eax
    mov 4(%esp), %ebx                # caller CS
    shl $16, %eax
    mov %bx, %ax
    lret
far_func_ret8:
    mov 8(%esp), %eax
    sub 12(%esp), %eax               # 0x2222 - 0x1111
    lret $8

.section .bss
.align 4096
page_dir: .skip 4096
scratch: .skip 16
    .skip 4096
tss_stack_top:
    .skip 8192
stack_top:
