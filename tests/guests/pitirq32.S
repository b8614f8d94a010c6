# External interrupts: 8259A PIC (initialised like Linux) and PIT channel 0 at 100 Hz (mode 2,
# count 11932); an IDT gate 0x20 handler counts ticks and sends EOI. Checks: sti;hlt loop to 10
# ticks (the interrupt returns to the instruction after hlt), a pending IRQ is held while IF=0
# and while masked in the IMR (IRR shows it), the STI interrupt shadow (the instruction after
# sti runs before the pending interrupt), and POPF setting IF delivers it with no shadow.
# expect-exit: 1
.include "multiboot.inc"
.include "serial32.inc"
.include "util32.inc"
.include "idt32.inc"

.section .data
.align 4
ticks:       .long 0
marker:      .long 0
seen_marker: .long 0
irq_eip:     .long 0

.section .text
irq0_handler:
    push %eax
    incl ticks
    mov marker, %eax
    mov %eax, seen_marker
    mov 4(%esp), %eax
    mov %eax, irq_eip
    mov $0x20, %al                   # non-specific EOI
    out %al, $0x20
    pop %eax
    iret

# wait_irr0: busy-wait (IF=0 or IRQ0 masked) until IRQ0 is pending in the master PIC's IRR.
wait_irr0:
    push %eax
    mov $0x0a, %al                   # OCW3: read IRR
    out %al, $0x20
1:  in $0x20, %al
    test $1, %al
    jz 1b
    pop %eax
    ret

.globl _start
_start:
    mov $stack_top, %esp
    call gdt_init
    call idt_init
    PUTS "pitirq32\n"
    mov $0x20, %eax
    mov $irq0_handler, %ebx
    mov $GATE_INT, %dl
    call idt_set
    # PIC: ICW1..ICW4 as Linux does, then mask all but IRQ0
    mov $0x11, %al
    out %al, $0x20
    out %al, $0xa0
    mov $0x20, %al
    out %al, $0x21
    mov $0x28, %al
    out %al, $0xa1
    mov $0x04, %al
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xa1
    mov $0x01, %al
    out %al, $0x21
    out %al, $0xa1
    mov $0xff, %al
    out %al, $0xa1
    mov $0xfe, %al
    out %al, $0x21
    in $0x21, %al
    PUTHEX8 "imr", %eax
    # PIT channel 0: mode 2, lobyte/hibyte, 11932 -> 100 Hz
    mov $0x34, %al
    out %al, $0x43
    mov $(11932 & 0xff), %al
    out %al, $0x40
    mov $(11932 >> 8), %al
    out %al, $0x40

    # ---- sti; hlt until 10 ticks ----
1:  sti
hlt_insn:
    hlt
    cli
    cmpl $10, ticks
    jb 1b
    PUTDEC "ticks", ticks
    mov irq_eip, %eax
    sub $hlt_insn, %eax
    PUTHEX "irq_eip_after_hlt", %eax

    # ---- IF=0 holds a pending interrupt ----
    mov ticks, %ebx
    call wait_irr0                   # an IRQ0 is now pending, IF=0
    mov ticks, %eax
    sub %ebx, %eax
    PUTDEC "ticks_during_cli", %eax
    # STI shadow: the instruction after sti executes before the pending interrupt
    movl $0, marker
    movl $-1, seen_marker
    sti
    movl $1, marker
    movl $2, marker
    cli
    PUTDEC "sti_shadow_marker", seen_marker
    mov ticks, %eax
    sub %ebx, %eax
    PUTDEC "ticks_after_sti", %eax
    # POPF setting IF: no shadow, the interrupt arrives before the next instruction
    call wait_irr0
    movl $0, marker
    movl $-1, seen_marker
    pushf
    orl $0x200, (%esp)
    popf
    movl $1, marker
    cli
    PUTDEC "popf_marker", seen_marker

    # ---- masked in the IMR: pending in IRR but not delivered even with IF=1 ----
    mov $0xff, %al
    out %al, $0x21
    mov ticks, %ebx
    sti
    call wait_irr0
    cli
    mov ticks, %eax
    sub %ebx, %eax
    PUTDEC "ticks_while_masked", %eax
    movl $0, marker
    movl $-1, seen_marker
    mov $0xfe, %al
    out %al, $0x21                   # unmask with IF=0: still held
    movl $1, marker
    sti
    movl $2, marker
    movl $3, marker
    cli
    PUTDEC "unmask_marker", seen_marker
    mov ticks, %eax
    sub %ebx, %eax
    PUTDEC "ticks_after_unmask", %eax
    # stop the PIT interrupts
    mov $0xff, %al
    out %al, $0x21
    PUTS "done\n"
    mov $0, %al
    call exit

.section .bss
.align 16
    .skip 8192
stack_top:
