# bits: 64
# Self-modifying code in long mode, the way Linux's alternatives and static keys do it:
# patch an immediate and rerun (several times), patch the very next instruction without a jump
# in between, flip a 5-byte jmp to a 5-byte nop and back, and write code into a fresh page
# through one virtual mapping and execute it through another (alias) mapping, then rewrite it.
# Last, an instruction that straddles into a not-present page: the #PF handler maps the page
# without INVLPG (not-present entries are never cached) and the retried fetch must see it.
# expect-exit: 1
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"

.set CODE_W, 0x40000000                # write alias
.set CODE_X, 0x40001000                # execute alias (same frame)

.section .text
main64:
    call idt64_init
    PUTS "smc64\n"

    # --- patch an immediate and rerun
    mov $3, %ebx
    mov $0x11111111, %r12d
1:  call patch_imm
    PUTHEX32 "imm", %eax
    add $0x11111111, %r12d
    mov %r12d, patch_imm+1(%rip)       # b8 imm32
    dec %ebx
    jnz 1b
    call patch_imm
    PUTHEX32 "imm", %eax

    # --- patch the next instruction with no jump in between (stores to code ahead are seen)
    mov $2, %ebx
2:  movl $0x22222222, 1f+1(%rip)
1:  mov $0x11111111, %eax
    PUTHEX32 "next insn", %eax
    movl $0x11111111, 1b+1(%rip)       # put it back and rerun the same code
    dec %ebx
    jnz 2b
    # a loop that patches its own body on each iteration
    xor %r13d, %r13d
    mov $4, %ecx
3:  add $0x10, %r13d
4:  add $1, %r13d                      # 41 83 c5 imm8: the imm8 is bumped each time
    incb 4b+3(%rip)
    loop 3b
    movb $1, 4b+3(%rip)
    PUTHEX32 "self-patching loop", %r13d

    # --- static key: 5-byte jmp <-> 5-byte nop
    call static_key
    PUTHEX32 "key (jmp)", %eax
    lea key_site(%rip), %rdi
    movl $0x00441f0f, (%rdi)           # 0f 1f 44 00 00: nopl 0(%rax,%rax,1)
    movb $0x00, 4(%rdi)
    call static_key
    PUTHEX32 "key (nop)", %eax
    lea key_jmp_orig(%rip), %rsi
    mov (%rsi), %eax
    mov %eax, (%rdi)
    mov 4(%rsi), %al
    mov %al, 4(%rdi)
    call static_key
    PUTHEX32 "key (jmp again)", %eax
    # alternatives: replace a call with a 5-byte nop, then with a call to another function
    call alt_site_fn
    PUTHEX32 "alt (call a)", %eax
    lea alt_call(%rip), %rdi
    movl $0x00441f0f, (%rdi)
    movb $0x00, 4(%rdi)
    call alt_site_fn
    PUTHEX32 "alt (nop)", %eax
    movb $0xe8, (%rdi)                 # call rel32 to alt_b
    lea alt_b(%rip), %rax
    lea 5(%rdi), %rdx
    sub %rdx, %rax
    mov %eax, 1(%rdi)
    call alt_site_fn
    PUTHEX32 "alt (call b)", %eax

    # --- fresh page, two mappings: write through CODE_W, execute through CODE_X
    lea code_pt(%rip), %rax
    or $3, %rax
    mov %rax, code_pd(%rip)            # PD[0] -> PT
    lea code_pd(%rip), %rax
    or $3, %rax
    mov %rax, boot_pdpt+8(%rip)        # PDPT[1] (1 GiB) -> PD
    lea code_page(%rip), %rax
    or $3, %rax
    mov %rax, code_pt(%rip)            # CODE_W
    mov %rax, code_pt+8(%rip)          # CODE_X
    mov %cr3, %rax
    mov %rax, %cr3
    mov $CODE_W, %rdi
    lea tmpl(%rip), %rsi
    mov $tmpl_end - tmpl, %ecx
    rep movsb
    mov $CODE_X, %rax
    call *%rax
    PUTHEX32 "alias exec", %eax
    mov $CODE_W, %rdi
    movl $0x600dc0de, tmpl_imm - tmpl(%rdi)
    mov $CODE_X, %rax
    call *%rax
    PUTHEX32 "alias exec after rewrite", %eax
    # replace the whole function through the write alias (a different instruction sequence)
    mov $CODE_W, %rdi
    movl $0x90c0ff48, (%rdi)           # inc %rax; nop
    movb $0xc3, 4(%rdi)                # ret
    mov $0x41, %eax
    mov $CODE_X, %rdx
    call *%rdx
    PUTHEX32 "alias exec new code", %eax
    # the code page itself, executed through the write alias too
    mov $CODE_W, %rdx
    mov $0x42, %eax
    call *%rdx
    PUTHEX32 "exec through the write alias", %eax

    # --- demand-mapped code: `mov $imm32, %eax` starts 2 bytes before the end of a present page
    # and ends in a not-present one; the #PF handler maps it (no INVLPG) and returns
    lea code_page2(%rip), %rax
    or $3, %rax
    mov %rax, code_pt+16(%rip)         # CODE_X + 0x1000: present
    mov %cr3, %rax
    mov %rax, %cr3
    mov $CODE_X + 0x1000, %rdi
    lea code_page3(%rip), %rsi         # write through the identity map: page 3 is not mapped yet
    movw $0xb890, 0xffd(%rdi)          # nop; b8 = mov $imm32, %eax (starts at 0xffe)
    # b8 at 0xffe and imm byte 0 at 0xfff of page 2; imm bytes 1..3 and a ret at 0..3 of page 3
    movb $0x11, 0xfff(%rdi)            # imm byte 0 (little-endian)
    movb $0x22, (%rsi)                 # imm byte 1
    movb $0x33, 1(%rsi)                # imm byte 2
    movb $0x44, 2(%rsi)                # imm byte 3
    movb $0xc3, 3(%rsi)                # ret
    lea map_page3(%rip), %rax
    mov %rax, exc_handlers+14*8(%rip)
    movl $0, page3_faults(%rip)
    mov $CODE_X + 0x1000 + 0xffd, %rax
    call *%rax
    PUTHEX32 "straddling fetch", %eax
    mov page3_faults(%rip), %eax
    PUTHEX32 "page faults to map it", %eax
    movq $0, exc_handlers+14*8(%rip)

    PUTS "done\n"
    mov $0, %al
    call exit

patch_imm:
    mov $0x11111111, %eax
    ret

# #PF handler: map code_page3 at CODE_X + 0x2000 (the faulting page), count, retry.
map_page3:
    incl page3_faults(%rip)
    lea code_page3(%rip), %rax
    or $3, %rax
    mov %rax, code_pt+24(%rip)
    ret

static_key:
key_site:
    .byte 0xe9
    .long key_off - (key_site + 5)     # jmp key_off
    mov $1, %eax
    ret
key_off:
    xor %eax, %eax
    ret

alt_site_fn:
    mov $0x100, %eax
alt_call:
    call alt_a
    ret
alt_a:
    add $0xa, %eax
    ret
alt_b:
    add $0xb, %eax
    ret

tmpl:
    .byte 0xb8                         # mov $imm32, %eax
tmpl_imm:
    .long 0x5a5a5a5a
    ret
tmpl_end:

.section .rodata
key_jmp_orig:
    .byte 0xe9
    .long key_off - (key_site + 5)

.section .bss
.align 4096
code_pd: .skip 4096
code_pt: .skip 4096
code_page: .skip 4096
code_page2: .skip 4096
code_page3: .skip 4096
page3_faults: .skip 8
