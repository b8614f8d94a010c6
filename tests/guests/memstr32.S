# Stack, control transfer and string instructions in 32-bit protected mode: push/pop forms,
# pusha/popa, pushf/popf, enter/leave, call/ret (ret imm16), indirect jmp/call through register
# and memory, movs/stos/lods/cmps/scas (byte/word/dword, rep/repe/repne, cld/std, ecx=0), xlat,
# loop/loopz/loopnz/jecxz. Addresses print relative to their buffers.
# expect-exit: 1
.include "multiboot.inc"
.include "serial32.inc"
.include "util32.inc"

.section .data
.align 4
mvar:   .long 0xcafef00d
mvar2:  .long 0
saved_esp: .long 0
jtab:   .long t_a, t_b, t_c
fptr:   .long func7
src:    .ascii "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
cmpa:   .ascii "hello world, hello!!"
cmpb:   .ascii "hello world; hello!!"
xtab:   .ascii "0123456789abcdef"
.align 4
dst:    .fill 40, 1, '.'
dst_end:

.section .text
.globl _start
_start:
    mov $stack_top, %esp
    PUTS "memstr32\n"

    # ---- push / pop ----
    mov %esp, %ebp
    push $0x12345678
    push $-2                         # imm8, sign-extended to 32 bits
    pushw $0x1234                    # 16-bit push: esp -= 2
    mov %ebp, %eax
    sub %esp, %eax
    PUTHEX "push_depth", %eax
    popw %ax
    PUTHEX16 "popw", %eax
    pop %ebx
    PUTHEX "pop_imm8", %ebx
    pop %ecx
    PUTHEX "pop_imm32", %ecx
    pushl mvar                       # push mem
    popl mvar2                       # pop mem
    PUTHEX "push_pop_mem", mvar2
    push $1
    push $2
    popl (%esp)                      # address computed after esp is incremented
    pop %eax
    PUTHEX "pop_to_esp", %eax
    mov %esp, %ebx
    push %esp                        # pushes the value before the push
    pop %eax
    sub %ebx, %eax
    PUTHEX "push_esp", %eax
    mov $0x100, %eax
    push %eax
    mov %esp, %ebx
    pop %esp                         # esp = popped value... restore below
    mov %esp, %ecx
    mov %ebx, %esp
    add $4, %esp
    PUTHEX "pop_esp", %ecx
    # pusha / popa
    mov $0x11111111, %eax
    mov $0x22222222, %ecx
    mov $0x33333333, %edx
    mov $0x44444444, %ebx
    mov $0x55555555, %ebp
    mov $0x66666666, %esi
    mov $0x77777777, %edi
    mov %esp, saved_esp
    pusha
    mov saved_esp, %eax
    sub 12(%esp), %eax               # saved esp slot = esp before pusha
    PUTHEX "pusha_esp", %eax
    mov 28(%esp), %eax
    PUTHEX "pusha_eax", %eax
    mov 0(%esp), %eax
    PUTHEX "pusha_edi", %eax
    movl $0xdeadbeef, 12(%esp)       # the esp slot is ignored by popa
    movl $0xabcdef01, 16(%esp)       # ebx slot
    xor %eax, %eax
    mov %eax, %ebx
    mov %eax, %ecx
    mov %eax, %edx
    mov %eax, %esi
    mov %eax, %edi
    mov %eax, %ebp
    popa
    PUTHEX "popa_ebx", %ebx
    PUTHEX "popa_esi", %esi
    mov saved_esp, %eax
    sub %esp, %eax
    PUTHEX "popa_esp", %eax
    pushw $0xaaaa
    pushw $0xbbbb
    pop %eax                         # two 16-bit pushes read as one dword
    PUTHEX "pushw2", %eax
    # pushf / popf: arithmetic flags and DF
    push $0xcd7                      # CF PF AF ZF SF DF OF + reserved bit 1
    popf
    pushf
    pop %eax
    cld                              # the console helpers use lodsb
    and $0xcd7, %eax
    PUTHEX "popf_set", %eax
    push $0x002
    popf
    pushf
    pop %eax
    and $0xcd7, %eax
    PUTHEX "popf_clr", %eax
    std
    pushf
    pop %eax
    cld
    pushf
    pop %ebx
    and $0x400, %eax
    and $0x400, %ebx
    PUTHEX "std_df", %eax
    PUTHEX "cld_df", %ebx

    # ---- enter / leave ----
    mov %esp, %esi
    push $0xf0f0f0f0                 # [ebp_outer - 4] copied by enter level 2
    mov %esp, %ebp
    add $4, %ebp                     # ebp points just above the pushed value
    mov %esp, %edi                   # esp before enter
    enter $8, $0
    mov %edi, %eax
    sub %esp, %eax
    PUTHEX "enter0_depth", %eax      # 4 (push ebp) + 8
    mov %edi, %eax
    sub %ebp, %eax
    PUTHEX "enter0_ebp", %eax        # ebp = esp after push ebp = edi - 4
    leave
    mov %edi, %eax
    sub %esp, %eax
    PUTHEX "leave_depth", %eax
    enter $12, $2
    mov %edi, %eax
    sub %esp, %eax
    PUTHEX "enter2_depth", %eax      # 4 + 4 (copied) + 4 (frame ptr) + 12
    PUTHEX "enter2_copy", -4(%ebp)   # copied from old ebp - 4
    mov (%ebp), %eax
    sub %edi, %eax
    PUTHEX "enter2_oldebp", %eax     # old ebp (= edi + 4) saved at [ebp]
    mov -8(%ebp), %eax
    sub %ebp, %eax
    PUTHEX "enter2_fp", %eax         # new frame pointer pushed last
    leave
    mov %esi, %esp
    mov %esp, %ebp

    # ---- call / ret ----
    mov %esp, %edi
    push $5
    push $6
    call func_ret8
    mov %edi, %ecx
    sub %esp, %ecx
    PUTHEX "ret8_eax", %eax
    PUTHEX "ret8_depth", %ecx
    call func_retaddr
1:  sub $1b, %eax
    PUTHEX "call_retaddr", %eax
    mov $func7, %ebx
    call *%ebx
    PUTHEX "call_reg", %eax
    xor %eax, %eax
    call *fptr
    PUTHEX "call_mem", %eax
    xor %eax, %eax
    mov $2, %ecx
    call *jtab(,%ecx,4)
    PUTHEX "call_tab", %eax
    mov $t_jmp_back, %ebx
    xor %eax, %eax
    mov $t_b, %edx
    jmp *%edx
t_jmp_back:
    PUTHEX "jmp_reg", %eax
    mov $jtab, %esi
    movl $t_jmp_back2, retslot
    jmp *(%esi)
t_jmp_back2:
    PUTHEX "jmp_mem", %eax

    # ---- strings ----
    cld
    mov $src, %esi
    mov $dst, %edi
    mov $5, %ecx
    rep movsb
    call show_str                    # ecx, esi/edi offsets, dst
    mov $src, %esi
    mov $dst, %edi
    mov $3, %ecx
    rep movsl
    call show_str
    mov $src, %esi
    mov $dst+2, %edi
    mov $3, %ecx
    rep movsw
    call show_str
    mov $src+7, %esi                 # backward, overlapping copy
    mov $dst+9, %edi
    mov $8, %ecx
    std
    rep movsb
    cld
    call show_str
    mov $src+28, %esi
    mov $dst+36, %edi
    mov $4, %ecx
    std
    rep movsl
    cld
    call show_str
    mov $src, %esi
    mov $dst, %edi
    xor %ecx, %ecx
    rep movsb                        # ecx = 0: nothing moves
    call show_str
    movsb                            # no rep: one byte
    movsw
    movsl
    call show_str
    mov $dst, %edi
    mov $0x2a2b, %ax
    mov $4, %ecx
    rep stosw
    call show_str
    mov $dst+39, %edi
    mov $'!', %al
    mov $3, %ecx
    std
    rep stosb
    cld
    call show_str
    mov $dst, %edi
    mov $0x34333231, %eax
    stosl
    call show_str
    mov $src+4, %esi
    lodsl
    PUTHEX "lodsl", %eax
    lodsw
    PUTHEX16 "lodsw", %eax
    std
    lodsb
    cld
    PUTHEX8 "lodsb_std", %eax
    mov %esi, %eax
    sub $src, %eax
    PUTHEX "lods_esi", %eax
    # cmps
    mov $cmpa, %esi
    mov $cmpb, %edi
    mov $20, %ecx
    mov %esi, base_s
    mov %edi, base_d
    repe cmpsb
    pushf
    call show_cmp
    mov $cmpa, %esi
    mov $cmpa, %edi
    mov $5, %ecx
    mov %esi, base_s
    mov %edi, base_d
    repe cmpsl
    pushf
    call show_cmp
    mov $cmpa, %esi
    mov $cmpb, %edi
    mov $10, %ecx
    mov %esi, base_s
    mov %edi, base_d
    repne cmpsw                      # stops at the first equal word
    pushf
    call show_cmp
    mov $cmpa, %esi
    mov $cmpb, %edi
    xor %ecx, %ecx
    cmp %ecx, %ecx                   # ZF=1 before: ecx = 0 leaves flags alone
    mov %esi, base_s
    mov %edi, base_d
    repe cmpsb
    pushf
    call show_cmp
    # scas
    mov $src, %edi
    mov $'K', %al
    mov $32, %ecx
    mov %esi, base_s
    mov %edi, base_d
    repne scasb
    pushf
    call show_cmp
    mov $src, %edi
    mov $0x4443, %ax                 # "CD": found at offset 2
    mov $16, %ecx
    mov %esi, base_s
    mov %edi, base_d
    repne scasw
    pushf
    call show_cmp
    mov $src+16, %edi
    mov $0x54535251, %eax            # "QRST"
    mov $4, %ecx
    mov %esi, base_s
    mov %edi, base_d
    repe scasl
    pushf
    call show_cmp
    mov $src+31, %edi
    mov $'Z', %al
    mov $32, %ecx
    std
    mov %esi, base_s
    mov %edi, base_d
    repne scasb
    cld
    pushf
    call show_cmp
    # xlat
    mov $xtab, %ebx
    mov $0x0c, %eax
    xlat
    PUTHEX "xlat", %eax
    mov $0xffffff0b, %eax
    xlatb
    PUTHEX "xlat2", %eax

    # ---- loops ----
    mov $10, %ecx
    xor %eax, %eax
1:  inc %eax
    loop 1b
    PUTHEX "loop", %eax
    PUTHEX "loop_ecx", %ecx
    mov $10, %ecx
    xor %eax, %eax
1:  inc %eax
    cmp $4, %eax
    loopnz 1b                        # stops when eax == 4 (ZF=1)
    PUTHEX "loopnz", %eax
    PUTHEX "loopnz_ecx", %ecx
    mov $10, %ecx
    mov $src, %esi
    xor %eax, %eax
1:  inc %eax
    cmpb $'A', (%esi,%eax)           # ZF=0 immediately -> loopz stops
    loopz 1b
    PUTHEX "loopz", %eax
    PUTHEX "loopz_ecx", %ecx
    mov $3, %ecx
    xor %eax, %eax
1:  inc %eax
    cmp %eax, %eax                   # ZF=1 -> loopz runs until ecx = 0
    loopz 1b
    PUTHEX "loopz2", %eax
    xor %ecx, %ecx
    mov $1, %eax
    jecxz 1f
    mov $2, %eax
1:  PUTHEX "jecxz0", %eax
    mov $0x10000, %ecx               # cx = 0 but ecx != 0: jecxz looks at ecx
    mov $1, %eax
    jecxz 1f
    mov $2, %eax
1:  PUTHEX "jecxz1", %eax
    xor %ecx, %ecx
    mov $0, %eax
1:  inc %eax
    cmp $3, %eax
    je 2f
    loop 1b                          # ecx 0 -> 0xffffffff: loops
2:  PUTHEX "loop_wrap_ecx", %ecx
    PUTS "done\n"
    mov $0, %al
    call exit

# --- helpers ---
func_ret8:
    mov 4(%esp), %eax
    sub 8(%esp), %eax                # 6 - 5
    ret $8
func_retaddr:
    mov (%esp), %eax
    ret
func7:
    mov $7, %eax
    ret
t_a:
    mov $0xa, %eax
    jmp *retslot
t_b:
    mov $0xb, %eax
    jmp *%ebx
t_c:
    mov $0xc, %eax
    ret
.section .data
retslot: .long 0
base_s: .long 0
base_d: .long 0
.section .text

# show_str: print "ecx=.. esi=+.. edi=+.. dst=<40 bytes>" (esi relative to src, edi to dst).
show_str:
    push %eax
    PUTS "str ecx="
    mov %ecx, %eax
    call puthex32
    PUTS " esi=+"
    mov %esi, %eax
    sub $src, %eax
    call puthex32
    PUTS " edi=+"
    mov %edi, %eax
    sub $dst, %eax
    call puthex32
    PUTS " dst="
    push %esi
    push %ecx
    mov $dst, %esi
    mov $40, %ecx
1:  lodsb
    call putc
    loop 1b
    pop %ecx
    pop %esi
    call newline
    pop %eax
    ret
# show_cmp: flags pushed by the caller; print "cmp ecx=.. esi=+.. edi=+.. fl=.." (esi/edi
# relative to their values before the instruction).
show_cmp:
    push %eax
    PUTS "cmp ecx="
    mov %ecx, %eax
    call puthex32
    PUTS " esi=+"
    mov %esi, %eax
    sub base_s, %eax
    call puthex32
    PUTS " edi=+"
    mov %edi, %eax
    sub base_d, %eax
    call puthex32
    PUTS " fl="
    mov 8(%esp), %eax
    and $0x8d5, %eax
    call puthex16
    call newline
    pop %eax
    ret $4

.section .bss
.align 16
    .skip 8192
stack_top:
