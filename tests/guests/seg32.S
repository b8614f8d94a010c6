# Segment limit and type checks in 32-bit protected mode (SDM Vol. 3, 5.3 and 5.5): accesses
# past a byte-granular limit, expand-down segments, read-only data, writes through CS and stack
# accesses past SS's limit. QEMU TCG does not check segment limits, so this kernel's expected
# output follows the SDM (each fault is the architectural #GP(0) or #SS(0)).
# expect-exit: 1
.include "multiboot.inc"
.include "serial32.inc"
.include "util32.inc"
.include "idt32.inc"

.set SEL_LIM, SEL_SPARE              # 0x30: data, base 0x200000, limit 0xfff (byte granular)
.set SEL_DOWN, SEL_SPARE + 8         # 0x38: expand-down data, base 0x200000, limit 0xfff, B=1
.set SEL_RO, SEL_SPARE + 16          # 0x40: read-only data, flat
.set SEL_STK, SEL_SPARE + 24         # 0x48: stack, base 0x300000, limit 0xfff

.section .text
.globl _start
_start:
    mov $stack_top, %esp
    call gdt_init
    call idt_init
    PUTS "seg32\n"
    movl $0x00000fff, gdt32 + SEL_LIM          # base 15..0 = 0, limit 15..0 = 0x0fff
    movl $0x00409320, gdt32 + SEL_LIM + 4      # base 23..16 = 0x20, data RW, B=1, G=0
    movl $0x00000fff, gdt32 + SEL_DOWN
    movl $0x00409720, gdt32 + SEL_DOWN + 4     # expand-down RW (type 7), base 0x200000, B=1
    movl $0x0000ffff, gdt32 + SEL_RO
    movl $0x00cf9100, gdt32 + SEL_RO + 4       # read-only data (type 1), flat
    movl $0x00000fff, gdt32 + SEL_STK
    movl $0x00409330, gdt32 + SEL_STK + 4      # base 0x300000, limit 0xfff
    movl $0x11223344, 0x200ffc                 # SEL_LIM:0xffc, the last dword inside the limit
    movl $0x55667788, 0x300000

    # ---- byte-granular limit ----
    mov $SEL_LIM, %ax
    mov %ax, %fs
    mov %fs:0xffc, %eax
    PUTHEX "lim_last_dword", %eax
    movzbl %fs:0xfff, %eax
    PUTHEX "lim_last_byte", %eax
    movl $0, exc_vec
    EXPECT_FAULT 1f
    mov %fs:0xffd, %eax                        # bytes 0xffd..0x1000: one past the limit
1:  PUTHEX "lim_cross_vec", exc_vec
    PUTHEX "lim_cross_err", exc_err
    movl $0, exc_vec
    EXPECT_FAULT 1f
    movl $1, %fs:0x1000
1:  PUTHEX "lim_write_vec", exc_vec
    movl $0xabcd, %fs:0x10                     # inside: works
    mov 0x200010, %eax
    PUTHEX "lim_write_ok", %eax

    # ---- expand-down: valid offsets are limit+1 .. 0xffffffff ----
    mov $SEL_DOWN, %ax
    mov %ax, %gs
    movl $0x99, 0x201000
    mov %gs:0x1000, %eax                       # above the limit (0xfff): valid
    PUTHEX "down_above", %eax
    movl $0, exc_vec
    EXPECT_FAULT 1f
    mov %gs:0xffe, %eax                        # at or below the limit: #GP
1:  PUTHEX "down_below_vec", exc_vec

    # ---- read-only data ----
    mov $SEL_RO, %ax
    mov %ax, %es
    mov %es:0x200ffc, %eax
    PUTHEX "ro_read", %eax
    movl $0, exc_vec
    EXPECT_FAULT 1f
    movl $5, %es:0x200ffc
1:  PUTHEX "ro_write_vec", exc_vec
    mov 0x200ffc, %eax
    PUTHEX "ro_unchanged", %eax
    movl $0, exc_vec
    EXPECT_FAULT 1f
    mov $0x200000, %edi
    stosl                                      # string store through ES (read-only)
1:  PUTHEX "ro_stos_vec", exc_vec
    mov $SEL_DATA, %ax
    mov %ax, %es

    # ---- writes through CS ----
    movl $0, exc_vec
    EXPECT_FAULT 1f
    movl $0, %cs:0x200000
1:  PUTHEX "cs_write_vec", exc_vec
    mov %cs:0x200ffc, %eax                     # reading through a readable code segment is fine
    PUTHEX "cs_read", %eax

    # ---- stack past SS's limit ----
    mov %esp, saved_esp
    mov $SEL_STK, %ax
    mov %ax, %ss
    mov $0x1004, %esp                          # above the limit: the push writes 0x1000..0x1003
    movl $0, exc_vec
    EXPECT_FAULT 1f
    push $1
1:  mov $SEL_DATA, %ax
    mov %ax, %ss
    mov saved_esp, %esp
    PUTHEX "ss_push_vec", exc_vec
    PUTHEX "ss_push_err", exc_err
    mov $SEL_STK, %ax
    mov %ax, %ss
    mov $0x10, %esp
    pop %ebx                                   # inside the limit: reads 0x300010
    mov $SEL_DATA, %ax
    mov %ax, %ss
    mov saved_esp, %esp
    PUTHEX "ss_pop_esp_ok", %ebx

    PUTHEX "exc_count", exc_count
    mov $0, %al
    call exit

.section .data
saved_esp: .long 0
.section .bss
.align 16
    .skip 8192
stack_top:
