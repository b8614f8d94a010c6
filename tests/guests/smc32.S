# Self-modifying code: patch an immediate and call again; patch a loop's own instruction from
# inside the loop; store to the very next instruction in the same straight-line block (P6 and
# later see the new bytes, SDM 8.1.3) and after a jmp; toggle a static-key style jmp/5-byte nop
# site; copy code to a fresh page with rep movsb, run it, patch it, overwrite it with other code.
# The kernel's pages are writable: paging is off.
# expect-exit: 1
.include "multiboot.inc"
.include "serial32.inc"
.include "util32.inc"

.section .text
smc_fn:
    mov $1, %eax                     # b8 imm32: immediate at smc_fn+1
    ret

# static-key site: 5-byte nop (default false) or jmp rel32 to the true branch
key_fn:
key_site:
    .byte 0x0f, 0x1f, 0x44, 0x00, 0x00
    mov $0xaa, %eax
    ret
key_true:
    mov $0xbb, %eax
    ret

# position-independent routines copied to the fresh page
copy_a:
    mov $0x1111, %eax                # immediate at copy_a+1
    add %eax, %eax
    ret
copy_a_end:
copy_b:
    xor %eax, %eax
    mov $5, %ecx
1:  add %ecx, %eax                   # 5+4+3+2+1
    loop 1b
    call 2f                          # relative call inside the copy
    ret
2:  add $0x100, %eax
    ret
copy_b_end:

.globl _start
_start:
    mov $stack_top, %esp
    PUTS "smc32\n"
    # ---- patch an immediate, call again ----
    call smc_fn
    PUTHEX "fn_first", %eax
    movl $2, smc_fn+1
    call smc_fn
    PUTHEX "fn_patched", %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
1:  mov %ecx, smc_fn+1
    call smc_fn
    add %eax, %ebx
    inc %ecx
    cmp $100, %ecx
    jb 1b
    PUTDEC "fn_patch_loop_sum", %ebx # 0 + 1 + ... + 99
    # ---- a loop that patches its own instruction ----
    xor %ebx, %ebx
    xor %ecx, %ecx
self_loop:
    add $0x00000000, %ebx            # 81 c3 imm32 (the immediate at self_loop+2)
    incl self_loop + 2
    inc %ecx
    cmp $10, %ecx
    jb self_loop
    PUTDEC "self_loop_sum", %ebx     # 0 + 1 + ... + 9
    movl $0, self_loop + 2
    # ---- store to the next instruction, same block ----
    mov $1, %eax
    movl $2, next1 + 1
next1:
    mov $1, %eax
    PUTHEX "next_insn", %eax
    movl $3, next1b + 1              # further ahead in the same block
    nop
    nop
next1b:
    mov $1, %eax
    PUTHEX "next_insn_ahead", %eax
    movb $0x90, next_nop             # turn "inc %eax" into "nop" just before it runs
    xor %eax, %eax
next_nop:
    inc %eax
    PUTHEX "next_insn_to_nop", %eax
    # ---- store, then jmp to the patched code ----
    movl $4, next2 + 1
    jmp next2
next2:
    mov $1, %eax
    PUTHEX "after_jmp", %eax
    # ---- static key: nop <-> jmp ----
    call key_fn
    PUTHEX "key_default", %eax
    movb $0xe9, key_site             # jmp rel32 key_true
    movl $(key_true - key_site - 5), key_site + 1
    call key_fn
    PUTHEX "key_enabled", %eax
    movl $0x00441f0f, key_site       # back to the 5-byte nop
    movb $0x00, key_site + 4
    call key_fn
    PUTHEX "key_disabled", %eax
    xor %ebx, %ebx                   # toggle 20 times, summing results
    mov $20, %ecx
1:  movb $0xe9, key_site
    movl $(key_true - key_site - 5), key_site + 1
    test $1, %ecx
    jz 2f
    movl $0x00441f0f, key_site
    movb $0x00, key_site + 4
2:  call key_fn
    add %eax, %ebx
    loop 1b
    PUTHEX "key_toggle_sum", %ebx    # 10 * 0xaa + 10 * 0xbb
    # ---- copy code to a fresh page ----
    mov $copy_a, %esi
    mov $code_page, %edi
    mov $(copy_a_end - copy_a), %ecx
    rep movsb
    mov $code_page, %eax
    call *%eax
    PUTHEX "copy_a", %eax
    movl $0x2222, code_page + 1
    mov $code_page, %eax
    call *%eax
    PUTHEX "copy_a_patched", %eax
    mov $copy_b, %esi
    mov $code_page, %edi
    mov $(copy_b_end - copy_b), %ecx
    rep movsb
    mov $code_page, %eax
    call *%eax
    PUTHEX "copy_b", %eax
    mov $code_page + 0x800, %edi     # same page, other offset: stosb a "mov $7,%eax; ret"
    mov $0xb8, %al
    stosb
    mov $7, %eax
    stosl
    mov $0xc3, %al
    stosb
    mov $code_page + 0x800, %eax
    call *%eax
    PUTHEX "stos_code", %eax
    mov $code_page, %eax             # copy_b still intact next to it
    call *%eax
    PUTHEX "copy_b_again", %eax
    PUTS "done\n"
    mov $0, %al
    call exit

.section .bss
.align 4096
code_page: .skip 4096
    .skip 8192
stack_top:
