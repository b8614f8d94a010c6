# Exceptions and software interrupts in 32-bit protected mode through an IDT of interrupt and
# trap gates: #DE, #BR, #UD, #BP, #OF, #GP, #NP (gate and segment), #SS, #PF, #DF, int n.
# Each prints vector, error code, EIP relative to the faulting instruction and IF inside the
# handler (interrupt gates clear IF, trap gates keep it). Runs with IF=1 and the PIC masked.
# expect-exit: 1
.include "multiboot.inc"
.include "serial32.inc"
.include "util32.inc"
.include "idt32.inc"

.set SEL_NP_DATA, SEL_SPARE          # present bit clear
.set SEL_CODE_AS_DATA, SEL_SPARE + 8 # execute-only code segment

.section .data
bounds: .long 10, 20
.section .text
# REP name, label: report the exception and the IF flag seen inside the handler and saved in
# the interrupted frame.
.macro REP name, label
    REPORT "\name", \label
    push %eax
    PUTS "  handler_if="
    mov exc_hflags, %eax
    shr $9, %eax
    and $1, %eax
    call puthex8
    PUTS " saved_if="
    mov exc_eflags, %eax
    shr $9, %eax
    and $1, %eax
    call puthex8
    call newline
    pop %eax
.endm

.globl _start
_start:
    mov $stack_top, %esp
    call gdt_init
    call idt_init
    PUTS "exc32\n"
    # spare descriptors: not-present data segment, execute-only code segment
    movl $0x0000ffff, gdt32 + SEL_NP_DATA
    movl $0x00cf1300, gdt32 + SEL_NP_DATA + 4     # P=0, data RW
    movl $0x0000ffff, gdt32 + SEL_CODE_AS_DATA
    movl $0x00cf9900, gdt32 + SEL_CODE_AS_DATA + 4  # P=1, code execute-only
    # trap gates for #BP, #OF and vector 0x41
    mov $GATE_TRAP, %dl
    mov $3, %eax
    call idt_set_type
    mov $4, %eax
    call idt_set_type
    mov $0x41, %eax
    call idt_set_type
    # mask the PIC, enable interrupts
    mov $0xff, %al
    out %al, $0x21
    out %al, $0xa1
    sti

    EXPECT_FAULT 1f
    xor %ebx, %ebx
    mov $1, %eax
    xor %edx, %edx
de:
    div %ebx
1:  REP "de", de
    EXPECT_FAULT 1f
    mov $25, %eax
br:
    bound %eax, bounds
1:  REP "br", br
    EXPECT_FAULT 1f
ud:
    ud2
1:  REP "ud", ud
    movl $1, exc_resume              # traps: resume after the instruction
bp:
    int3
bp_end:
    REP "bp", bp_end
    mov $0x7f, %al
    add $1, %al                      # OF = 1
of:
    into
of_end:
    REP "of", of_end
    mov $0, %al
    add $1, %al                      # OF = 0: into does nothing
    into
    PUTHEX "into_no_of_count", exc_count
int40:
    int $0x40
int40_end:
    REP "int40", int40_end
int41:
    int $0x41
int41_end:
    REP "int41_trapgate", int41_end
    movl $0, exc_resume

    EXPECT_FAULT 1f
    mov $0x80, %eax                  # beyond the GDT limit
gp_sel:
    mov %ax, %ds
1:  REP "gp_selector", gp_sel
    EXPECT_FAULT 1f
    mov $SEL_CODE_AS_DATA, %eax
gp_code:
    mov %ax, %es                     # execute-only code segment into a data register
1:  REP "gp_exec_only", gp_code
    EXPECT_FAULT 1f
    mov $SEL_NP_DATA, %eax
np_seg:
    mov %ax, %fs
1:  REP "np_segment", np_seg
    EXPECT_FAULT 1f
    mov $SEL_NP_DATA, %eax
ss_seg:
    mov %ax, %ss
1:  REP "ss_segment", ss_seg
    EXPECT_FAULT 1f
    xor %eax, %eax
gp_ss_null:
    mov %ax, %ss                     # null SS at CPL 0 in 32-bit mode: #GP(0)
1:  REP "gp_ss_null", gp_ss_null
    # (no segment limit/rights violations on ordinary data accesses: QEMU TCG does not check them)
    # #NP for a not-present gate: error code = vector*8 + 2 (IDT)
    mov $0x42, %eax
    mov $0x0E, %dl                   # P = 0
    call idt_set_type
    EXPECT_FAULT 1f
np_gate:
    int $0x42
1:  REP "np_gate", np_gate
    # #PF with paging: one 4 MiB identity page, everything else not present
    movl $0x83 + 0x00, pd            # P RW PS, base 0
    mov %cr4, %eax
    or $0x10, %eax
    mov %eax, %cr4
    mov $pd, %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    EXPECT_FAULT 1f
pf:
    movl $1, 0x400abc
1:  REP "pf", pf
    PUTHEX "cr2", exc_cr2
    # #DF: #GP while the #GP gate is not present -> #NP during delivery -> #DF (EIP undefined)
    mov $13, %eax
    mov $0x0E, %dl
    call idt_set_type
    EXPECT_FAULT 1f
    mov $0x80, %eax
    mov %ax, %ds
1:  PUTS "df: vec="
    mov exc_vec, %eax
    call puthex8
    PUTS " err="
    mov exc_err, %eax
    call puthex32
    call newline
    mov $13, %eax
    mov $GATE_INT, %dl
    call idt_set_type
    # #DF from a #PF whose gate is not present (#PF then #NP)
    mov $14, %eax
    mov $0x0E, %dl
    call idt_set_type
    EXPECT_FAULT 1f
    movl $1, 0x400abc
1:  PUTS "df2: vec="
    mov exc_vec, %eax
    call puthex8
    PUTS " err="
    mov exc_err, %eax
    call puthex32
    call newline
    mov $14, %eax
    mov $GATE_INT, %dl
    call idt_set_type
    # segment registers still usable after the faults
    mov %ds, %eax
    PUTHEX "ds", %eax
    mov %ss, %eax
    PUTHEX "ss", %eax
    PUTHEX "exc_count", exc_count
    pushf
    pop %eax
    and $0x200, %eax
    PUTHEX "if_at_end", %eax
    cli
    PUTS "done\n"
    mov $0, %al
    call exit

.section .bss
.align 4096
pd: .skip 4096
    .skip 8192
stack_top:
