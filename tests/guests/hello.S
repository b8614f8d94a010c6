# The smallest guest: print a line and the multiboot magic, exit with status 1 (value 0).
# expect-exit: 1
.include "multiboot.inc"
.include "serial32.inc"
.section .text
.globl _start
_start:
    mov $stack_top, %esp
    PUTS "hello from a multiboot guest\n"
    PUTHEX "eax", %eax
    mov $0, %al
    call exit
.section .bss
.align 16
    .skip 4096
stack_top:
