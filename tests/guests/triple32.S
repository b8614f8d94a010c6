# A guest that triple-faults: an IDT with limit 0 turns int3 into #GP, #GP into #DF (the #GP
# cannot be delivered either) and #DF into a triple fault. btvisor stops with status 3 and a
# register dump on stderr.
# expect-exit: 3
.include "multiboot.inc"
.include "serial32.inc"
.section .text
.globl _start
_start:
    mov $stack_top, %esp
    PUTS "triple32\n"
    lidt idt_ptr
    int3
    PUTS "not reached\n"
    mov $1, %al
    call exit
.section .data
idt_ptr: .word 0
         .long 0
.section .bss
.align 16
    .skip 4096
stack_top:
