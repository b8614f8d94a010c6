# bits: 64
# 64-bit IDT and exception delivery: #DE, #UD, #BP, #GP with error codes, #PF, int $0x40,
# trap gate vs interrupt gate (IF inside the handler), IST1 stack switch (TSS64), 16-byte
# alignment of the pushed frame, the saved CS/SS/RFLAGS, iretq back, and finally #DF on IST2
# (a #GP whose gate is not present raises #NP while delivering: contributory + contributory).
# expect-exit: 1
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"

.section .text
main64:
    call idt64_init
    PUTS "exc64\n"
    # TSS64: IST1 and IST2 point at their own stacks
    lea ist1_top(%rip), %rax
    mov %rax, tss64+36(%rip)
    lea ist2_top(%rip), %rax
    mov %rax, tss64+44(%rip)
    movw $104, tss64+102(%rip)         # I/O map base beyond the limit: no bitmap
    mov $TSS_SEL, %edi
    lea tss64(%rip), %rsi
    mov $103, %edx
    mov $0x89, %ecx
    call gdt_set_sys
    mov $TSS_SEL, %ax
    ltr %ax

    # --- faults and traps through the default handler (prints vector, error code, RIP)
    EXPECT_EXC 1f, 2f
    xor %ecx, %ecx
1:  div %rcx                           # #DE: fault, RIP at the div
2:  EXPECT_EXC 1f, 2f
1:  ud2                                # #UD
2:  EXPECT_EXC 1f, 2f
1:  .byte 0xce                         # into: invalid in 64-bit mode -> #UD
2:  EXPECT_EXC 1f, 2f
1:  int3                               # #BP: trap, RIP after the int3
2:  EXPECT_EXC 1f, 2f
1:  .byte 0xcd, 0x03                   # int $3 (2 bytes): #BP, RIP after
2:  EXPECT_EXC 1f, 2f
    mov $0xfff8, %ax
1:  mov %ax, %ds                       # beyond the GDT limit: #GP(fff8)
2:  EXPECT_EXC 1f, 2f
    mov $UCODE64|3, %ax
1:  mov %ax, %ss                       # SS with RPL != CPL: #GP(30)
2:  EXPECT_EXC 1f, 2f
    mov $LDT_SEL+4, %ax
1:  mov %ax, %es                       # TI=1 with a null LDTR: #GP(54)
2:  EXPECT_EXC 1f, 2f
    mov $0x8000000000000000, %rax
1:  mov (%rax), %rax                   # non-canonical: #GP(0)
2:  EXPECT_EXC 1f, 2f
    mov $0x40000000, %rbx
1:  mov %rax, 8(%rbx)                  # above the 1 GiB identity map: #PF(2)
2:  EXPECT_EXC 1f, 2f
1:  int $0x40                          # software interrupt: RIP after, no error code
2:  mov $KDATA, %eax
    mov %eax, %ds
    mov %eax, %es

    # --- the saved frame of a same-privilege interrupt
    lea frame_handler(%rip), %rax
    mov %rax, exc_handlers+0x45*8(%rip)
    mov $0x8d5, %eax
    push %rax
    popfq                              # arithmetic flags set: saved RFLAGS shows them
    int $0x45
    pushfq
    pop %rax
    and $0x8d5, %eax
    PUTHEX32 "rflags after iretq", %eax

    # --- trap gate vs interrupt gate: IF inside the handler
    lea if_handler(%rip), %rax
    mov %rax, exc_handlers+0x41*8(%rip)
    mov %rax, exc_handlers+0x42*8(%rip)
    mov $0x41, %edi
    mov $0x8F00, %edx                  # trap gate
    call idt_set_attr
    mov $0xff, %al                     # mask both PICs: no external interrupts while IF=1
    out %al, $0x21
    out %al, $0xa1
    sti
    int $0x41
    int $0x42
    cli

    # --- IST1: the handler runs on its own stack
    lea ist_handler(%rip), %rax
    mov %rax, exc_handlers+0x43*8(%rip)
    mov $0x43, %edi
    mov $0x8E01, %edx
    call idt_set_attr
    mov %rsp, saved_rsp(%rip)
    int $0x43
    sub %rsp, saved_rsp(%rip)
    PUTHEX "rsp change across ist int", saved_rsp(%rip)

    # --- 16-byte alignment of the pushed frame
    lea align_handler(%rip), %rax
    mov %rax, exc_handlers+0x44*8(%rip)
    mov %rsp, %rbx
    and $-16, %rsp
    int $0x44
    sub $8, %rsp
    int $0x44
    mov %rbx, %rsp

    # --- #DF on IST2: vector 13 not present, then #GP
    lea df_handler(%rip), %rax
    mov %rax, exc_handlers+8*8(%rip)
    mov $8, %edi
    mov $0x8E02, %edx
    call idt_set_attr
    mov $13, %edi
    mov $0x0E00, %edx                  # P=0
    call idt_set_attr
    mov $0xfff8, %ax
    mov %ax, %ds
    PUTS "not reached\n"
    mov $2, %al
    call exit

frame_handler:
    PUTS "int 45: "
    mov F_CS(%rdi), %rax
    PUTS "cs="
    call puthex16
    mov F_SS(%rdi), %rax
    PUTS " ss="
    call puthex16
    mov F_RFLAGS(%rdi), %rax
    PUTS " rflags="
    call puthex32
    call newline
    ret

if_handler:
    PUTS "int "
    mov F_VEC(%rdi), %rax
    call puthex8
    pushfq
    pop %rax
    shr $9, %eax
    and $1, %eax
    PUTS ": IF in handler="
    call puthex8
    mov F_RFLAGS(%rdi), %rax
    shr $9, %eax
    and $1, %eax
    PUTS " saved IF="
    call puthex8
    call newline
    ret

ist_handler:
    lea ist1_top(%rip), %rax
    sub %rdi, %rax                     # frame offset below the IST1 top
    PUTS "ist1: frame=top-"
    call puthex16
    lea ist1_bottom(%rip), %rax
    cmp %rax, %rsp
    setae %al
    lea ist1_top(%rip), %rdx
    cmp %rdx, %rsp
    setb %ah
    and %ah, %al
    PUTS " rsp in ist1 stack="
    call puthex8
    mov F_RSP(%rdi), %rax
    sub saved_rsp(%rip), %rax
    PUTS " saved rsp-rsp="
    call puthex16
    call newline
    ret

align_handler:
    lea F_SS+8(%rdi), %rax
    and $15, %eax
    PUTS "align: frame top&15="
    call puthex8
    mov F_RSP(%rdi), %rax
    and $15, %eax
    PUTS " saved rsp&15="
    call puthex8
    call newline
    ret

df_handler:
    PUTS "#DF err="
    mov F_ERR(%rdi), %rax
    call puthex32
    lea ist2_bottom(%rip), %rax
    cmp %rax, %rsp
    setae %al
    lea ist2_top(%rip), %rdx
    cmp %rdx, %rsp
    setb %ah
    and %ah, %al
    PUTS " rsp in ist2 stack="
    call puthex8
    call newline
    PUTS "done\n"
    mov $0, %al
    call exit

.section .data
.align 16
tss64: .skip 104
saved_rsp: .quad 0

.section .bss
.align 16
ist1_bottom: .skip 4096
ist1_top:
ist2_bottom: .skip 4096
ist2_top:
