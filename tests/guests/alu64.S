# bits: 64
# 64-bit integer ALU: every group runs over a table of edge operands (a, b in 16 values each,
# CF in 0/1) and prints an FNV-1a style hash of results and defined flags; then explicit lines.
# Undefined flags are masked as the SDM says (AF for logic/shifts, OF for multi-bit shifts and
# rotates, SF/ZF/AF/PF for mul/imul, everything for div, all but CF for bt*, all but ZF for bsf/bsr).
# expect-exit: 1
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"

.set ALL, 0x8D5                      # OF SF ZF AF PF CF
.set LOGIC, 0x8C5                    # OF SF ZF PF CF (AF undefined)

# OP "name", mask: start a table entry; the routine follows (rax = a, rcx = b, RFLAGS = 2|CF,
# rdx = r8 = 0; returns rax, rdx = results, r8 = RFLAGS; r9-r11 are scratch).
.macro OP name, mask
    .pushsection .rodata
8000: .asciz "\name"
    .popsection
    .pushsection .data.optab, "aw"
    .quad 8001f, \mask, 8000b
    .popsection
8001:
.endm
# FL: capture RFLAGS into r8 and return.
.macro FL
    pushfq
    pop %r8
    ret
.endm
# FLOF1 cnt_mask: capture RFLAGS; clear OF unless (cl & cnt_mask) == 1; return.
.macro FLOF1 cmask
    pushfq
    pop %r8
    mov %ecx, %r9d
    and $\cmask, %r9d
    cmp $1, %r9d
    je 8002f
    and $~0x800, %r8
8002:
    ret
.endm

.section .data.optab, "aw"
.align 8
optab:

.section .text
# hmix: hash %rax into %r15. Clobbers r11.
hmix:
    xor %rax, %r15
    mov $0x100000001b3, %r11
    imul %r11, %r15
    ror $29, %r15
    ret

# run_op: rbx = routine, r12 = flag mask; returns the hash in rax.
run_op:
    push %r13
    push %r14
    push %r15
    push %rbp
    mov $0xcbf29ce484222325, %r15
    xor %r13d, %r13d
1:  xor %r14d, %r14d
2:  xor %ebp, %ebp
3:  lea vals(%rip), %r9
    mov (%r9,%r13,8), %rax
    mov (%r9,%r14,8), %rcx
    xor %edx, %edx
    xor %r8d, %r8d
    lea 2(%rbp), %r9
    push %r9
    popfq
    call *%rbx
    and %r12, %r8
    call hmix
    mov %rdx, %rax
    call hmix
    mov %r8, %rax
    call hmix
    inc %ebp
    cmp $2, %ebp
    jb 3b
    inc %r14
    cmp $NVALS, %r14
    jb 2b
    inc %r13
    cmp $NVALS, %r13
    jb 1b
    mov %r15, %rax
    pop %rbp
    pop %r15
    pop %r14
    pop %r13
    ret

# #DE handler: resume at de_resume with rax = 0xDEDE, count it.
de_handler:
    mov de_resume(%rip), %rax
    mov %rax, F_RIP(%rdi)
    movq $0xDEDE, F_RAX(%rdi)
    incq de_count(%rip)
    ret

main64:
    call idt64_init
    lea de_handler(%rip), %rax
    mov %rax, exc_handlers+0*8(%rip)
    PUTS "alu64\n"
    lea optab(%rip), %r13
1:  mov (%r13), %rbx
    test %rbx, %rbx
    jz 2f
    mov 8(%r13), %r12
    mov 16(%r13), %rsi
    call puts
    mov $'=', %al
    call putc
    call run_op
    call puthex64
    call newline
    add $24, %r13
    jmp 1b
2:  PUTHEX "de_count", de_count(%rip)
    call explicit
    PUTS "done\n"
    mov $0, %al
    call exit

# ---------------------------------------------------------------- table routines
.section .text
OP "add", ALL
    add %rcx, %rax
    FL
OP "add32", ALL
    add %ecx, %eax
    FL
OP "add16", ALL
    add %cx, %ax
    FL
OP "add8", ALL
    add %cl, %al
    FL
OP "add8h", ALL
    add %ch, %ah
    FL
OP "addimm8", ALL
    add $-1, %rax
    FL
OP "addimm32", ALL
    add $0x7fffffff, %rax
    FL
OP "adc", ALL
    adc %rcx, %rax
    FL
OP "adc32", ALL
    adc %ecx, %eax
    FL
OP "adc8", ALL
    adc %cl, %al
    FL
OP "sub", ALL
    sub %rcx, %rax
    FL
OP "sub32", ALL
    sub %ecx, %eax
    FL
OP "subimm", ALL
    sub $-0x80000000, %rax
    FL
OP "sbb", ALL
    sbb %rcx, %rax
    FL
OP "sbb16", ALL
    sbb %cx, %ax
    FL
OP "and", LOGIC
    and %rcx, %rax
    FL
OP "and32", LOGIC
    and %ecx, %eax
    FL
OP "andimm", LOGIC
    and $-0x10, %rax
    FL
OP "or", LOGIC
    or %rcx, %rax
    FL
OP "or8", LOGIC
    or %cl, %al
    FL
OP "xor", LOGIC
    xor %rcx, %rax
    FL
OP "xor32", LOGIC
    xor %ecx, %eax
    FL
OP "cmp", ALL
    cmp %rcx, %rax
    FL
OP "cmp32", ALL
    cmp %ecx, %eax
    FL
OP "cmpimm", ALL
    cmp $0x80, %rax
    FL
OP "test", LOGIC
    test %rcx, %rax
    FL
OP "test8", LOGIC
    test %cl, %al
    FL
OP "neg", ALL
    neg %rax
    FL
OP "neg32", ALL
    neg %eax
    FL
OP "not", ALL
    not %rax
    FL
OP "not16", ALL
    not %ax
    FL
OP "inc", ALL
    inc %rax
    FL
OP "inc32", ALL
    inc %eax
    FL
OP "dec", ALL
    dec %rax
    FL
OP "dec16", ALL
    dec %ax
    FL
OP "lockops", ALL
    mov %rax, memq(%rip)
    lock add %rcx, memq(%rip)
    pushfq
    pop %r8
    lock sbb %rax, memq(%rip)
    lock orl %ecx, memq+4(%rip)
    lock xorw %cx, memq+2(%rip)
    lock negq memq(%rip)
    lock incb memq+7(%rip)
    lock decq memq(%rip)
    lock notq memq(%rip)
    lock andq $-3, memq(%rip)
    pushfq
    pop %rdx
    and $LOGIC, %edx
    shl $12, %r8
    or %rdx, %r8
    mov memq(%rip), %rax
    ret
OP "shl", LOGIC
    shl %cl, %rax
    FLOF1 63
OP "shr", LOGIC
    shr %cl, %rax
    FLOF1 63
OP "sar", LOGIC
    sar %cl, %rax
    FLOF1 63
OP "shl32", LOGIC
    shl %cl, %eax
    FLOF1 31
OP "shr32", LOGIC
    shr %cl, %eax
    FLOF1 31
OP "sar32", LOGIC
    sar %cl, %eax
    FLOF1 31
OP "shl1", LOGIC
    shl %rax
    FL
OP "sar1", LOGIC
    sar %rax
    FL
OP "shr1", LOGIC
    shr %rax
    FL
OP "shlimm", LOGIC & ~0x800
    shl $63, %rax
    FL
OP "sarimm", LOGIC & ~0x800
    sar $33, %rax
    FL
OP "rol", 0x801
    rol %cl, %rax
    FLOF1 63
OP "ror", 0x801
    ror %cl, %rax
    FLOF1 63
OP "rol32", 0x801
    rol %cl, %eax
    FLOF1 31
OP "ror16", 0x801
    and $15, %ecx
    ror %cl, %ax
    FLOF1 15
OP "rolimm", 0x001
    rol $13, %rax
    FL
OP "rcl", 0x801
    rcl %cl, %rax
    FLOF1 63
OP "rcr", 0x801
    rcr %cl, %rax
    FLOF1 63
OP "rcl32", 0x801
    rcl %cl, %eax
    FLOF1 31
OP "rcr32", 0x801
    rcr %cl, %eax
    FLOF1 31
OP "rcl8", 0x801
    pushfq                          # keep the input CF across the and
    and $7, %ecx
    popfq
    rcl %cl, %al
    FLOF1 7
OP "rcr1", 0x801
    rcr %rax
    FL
OP "rcl1", 0x801
    rcl %rax
    FL
OP "shld", LOGIC
    shld %cl, %rcx, %rax
    FLOF1 63
OP "shrd", LOGIC
    shrd %cl, %rcx, %rax
    FLOF1 63
OP "shld32", LOGIC
    shld %cl, %ecx, %eax
    FLOF1 31
OP "shrd16", LOGIC
    and $15, %ecx
    shrd %cl, %cx, %ax
    FLOF1 15
OP "shldimm", LOGIC & ~0x800
    shld $7, %rcx, %rax
    FL
OP "shrdimm1", LOGIC
    shrd $1, %rcx, %rax
    FL
OP "mul", 0x801
    mul %rcx
    FL
OP "mul32", 0x801
    mul %ecx
    FL
OP "mul8", 0x801
    mul %cl
    FL
OP "imul1", 0x801
    imul %rcx
    FL
OP "imul1_32", 0x801
    imul %ecx
    FL
OP "imul1_16", 0x801
    imul %cx
    FL
OP "imul2", 0x801
    imul %rcx, %rax
    FL
OP "imul2_32", 0x801
    imul %ecx, %eax
    FL
OP "imul3i8", 0x801
    imul $-7, %rcx, %rax
    FL
OP "imul3i32", 0x801
    imul $0x12345678, %rcx, %rax
    FL
OP "imul3m", 0x801
    mov %rcx, memq(%rip)
    imul $-0x80000000, memq(%rip), %rax
    FL
OP "div", 0
    lea 1f(%rip), %r9
    mov %r9, de_resume(%rip)
    div %rcx
1:  ret
OP "divbig", 0
    lea 1f(%rip), %r9
    mov %r9, de_resume(%rip)
    mov %rax, %rdx
    mov $0x0123456789abcdef, %rax
    div %rcx
1:  ret
OP "idiv", 0
    lea 1f(%rip), %r9
    mov %r9, de_resume(%rip)
    cqo
    idiv %rcx
1:  ret
OP "idivbig", 0
    lea 1f(%rip), %r9
    mov %r9, de_resume(%rip)
    mov %rax, %rdx
    sar $33, %rdx
    xor $0x5a5a5a5a, %rax
    idiv %rcx
1:  ret
OP "div32", 0
    lea 1f(%rip), %r9
    mov %r9, de_resume(%rip)
    mov %rax, %rdx
    shr $40, %rdx
    div %ecx
1:  ret
OP "idiv32", 0
    lea 1f(%rip), %r9
    mov %r9, de_resume(%rip)
    cltd
    idiv %ecx
1:  ret
OP "div8", 0
    lea 1f(%rip), %r9
    mov %r9, de_resume(%rip)
    div %cl
1:  ret
OP "idiv16", 0
    lea 1f(%rip), %r9
    mov %r9, de_resume(%rip)
    mov %rcx, %rdx
    idiv %cx
1:  ret
OP "bt", 0x001
    bt %rcx, %rax
    FL
OP "bts", 0x001
    bts %rcx, %rax
    FL
OP "btr", 0x001
    btr %rcx, %rax
    FL
OP "btc", 0x001
    btc %rcx, %rax
    FL
OP "bt32", 0x001
    btc %ecx, %eax
    FL
OP "btimm", 0x001
    bts $63, %rax
    FL
OP "btsmem", 0x001
    mov %rax, memq(%rip)
    and $63, %ecx
    lock bts %rcx, memq(%rip)
    mov memq(%rip), %rax
    FL
OP "bsf", 0x040
    bsf %rcx, %rax
    pushfq
    pop %r8
    jnz 1f
    xor %eax, %eax
1:  ret
OP "bsr", 0x040
    bsr %rcx, %rax
    pushfq
    pop %r8
    jnz 1f
    xor %eax, %eax
1:  ret
OP "bsr32", 0x040
    bsr %ecx, %eax
    pushfq
    pop %r8
    jnz 1f
    xor %eax, %eax
1:  ret
OP "bswap", 0
    bswap %rax
    mov %rcx, %rdx
    bswap %edx
    ret
OP "bswapr", 0
    mov %rax, %r9
    bswap %r9
    mov %rcx, %r10
    bswap %r10
    mov %r9, %rax
    mov %r10, %rdx
    ret
OP "ext", 0
    movslq %ecx, %rax
    call hmix
    movsbq %cl, %rax
    call hmix
    movswq %cx, %rax
    call hmix
    movzbq %cl, %rax
    call hmix
    movzwq %cx, %rax
    call hmix
    mov $-1, %rax
    movsbl %cl, %eax
    call hmix
    mov $-1, %rax
    movzbw %ch, %ax
    call hmix
    mov $-1, %rax
    movsbw %cl, %ax
    call hmix
    mov %rcx, memq(%rip)
    movslq memq+4(%rip), %rax
    call hmix
    movzwl memq+6(%rip), %eax
    call hmix
    cltq
    call hmix
    mov %rcx, %rax
    cwtl
    call hmix
    mov %rcx, %rax
    cbtw
    call hmix
    mov %rcx, %rax
    cqto
    ret
OP "setcc", 0
    cmp %rcx, %rax
    lea memo(%rip), %r9
    seto 0(%r9)
    setno 1(%r9)
    setb 2(%r9)
    setae 3(%r9)
    sete 4(%r9)
    setne 5(%r9)
    setbe 6(%r9)
    seta 7(%r9)
    sets 8(%r9)
    setns 9(%r9)
    setp 10(%r9)
    setnp 11(%r9)
    setl 12(%r9)
    setge 13(%r9)
    setle 14(%r9)
    setg 15(%r9)
    mov (%r9), %rax
    mov 8(%r9), %rdx
    ret
OP "cmovcc", 0
    cmp %ecx, %eax
    xor %edx, %edx
    .set ccbit, 1
    .irp cc, o,no,b,ae,e,ne,be,a,s,ns,p,np,l,ge,le,g
    mov $0, %r11d
    mov $ccbit, %r10d
    cmov\cc %r10, %r11
    lea (%rdx,%r11), %rdx
    .set ccbit, ccbit * 2
    .endr
    mov $-1, %rax
    cmovz %ecx, %eax                # 32-bit cmov writes (zero-extends) even when false
    ret
OP "xchg", 0
    mov %rax, memq(%rip)
    xchg %rcx, memq(%rip)
    mov %rcx, %rdx
    xchg %eax, %edx
    add memq(%rip), %rax
    ret
OP "xadd", ALL
    mov %rax, memq(%rip)
    lock xadd %rcx, memq(%rip)
    pushfq
    pop %r8
    mov memq(%rip), %rax
    mov %rcx, %rdx
    xadd %edx, %eax
    ret
OP "cmpxchg", ALL
    mov %rcx, memq(%rip)
    mov %rax, %r9
    not %r9
    lock cmpxchg %r9, memq(%rip)
    pushfq
    pop %r8
    mov memq(%rip), %rdx
    ret
OP "cmpxchgeq", ALL
    mov %rax, memq(%rip)
    mov %rcx, %r9
    lock cmpxchg %r9, memq(%rip)
    pushfq
    pop %r8
    mov memq(%rip), %rdx
    ret
OP "cmpxchg32", ALL
    mov %eax, %eax
    mov %rcx, memq(%rip)
    lock cmpxchgl %eax, memq(%rip)
    pushfq
    pop %r8
    mov memq(%rip), %rdx
    ret
OP "cmpxchg8", ALL
    mov %rcx, memq(%rip)
    cmpxchg %ah, memq(%rip)
    pushfq
    pop %r8
    mov memq(%rip), %rdx
    ret
OP "lea", 0
    lea 0x10(%rax,%rcx,8), %rdx
    mov %rdx, %r9
    lea -1(,%rcx,4), %rdx
    add %rdx, %r9
    lea (%eax,%ecx,2), %rdx
    add %rdx, %r9
    lea -0x80000000(%rcx), %edx
    add %rdx, %r9
    mov %rax, %rdx
    lea (%rcx,%rcx,2), %dx
    add %rdx, %r9
    lea 0x7fffffff(%rax,%rax), %rax
    mov %r9, %rdx
    ret
OP "r8r15", ALL
    mov %rax, %r8
    mov %rcx, %r9
    mov %rax, %r10
    mov %rcx, %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rax, %r12
    mov %rcx, %r13
    lea 1(%rax), %r14
    lea -1(%rcx), %r15
    add %r9, %r8
    sub %r8, %r10
    xor %r10, %r11
    adc %r11, %r12
    sbb %r12, %r13
    and %r13, %r14
    or %r14, %r15
    add %r15d, %r14d
    add %r8w, %r9w
    sub %r10b, %r11b
    lea (%r8,%r9), %rax
    add %r10, %rax
    add %r11, %rax
    add %r12, %rax
    add %r13, %rax
    add %r14, %rax
    add %r15, %rax
    pushfq
    pop %r8
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    ret
OP "bytereg", LOGIC
    mov %rax, %rsi
    mov %rcx, %rdi
    add %sil, %dil
    sub %dil, %sil
    mov %rax, %r8
    xor %r8b, %sil
    mov %rcx, %rdx
    mov %dh, %al                    # no REX: ah/ch/dh/bh
    or %sil, %dl                    # REX: sil
    shl $8, %rdi
    or %rdi, %rdx
    mov %rsi, %rax
    pushfq
    pop %r8
    ret
.pushsection .data.optab, "aw"
    .quad 0
.popsection

# ---------------------------------------------------------------- explicit cases
explicit:
    # mul/imul/div/idiv with 128-bit operands
    mov $-1, %rax
    mov $-1, %rcx
    mul %rcx
    pushfq
    pop %r8
    and $0x801, %r8
    PUTS "mul ffff..*ffff..: "
    call puthex64
    call space
    mov %rdx, %rax
    call puthex64
    call space
    mov %r8, %rax
    call puthex16
    call newline

    mov $0x8000000000000000, %rax
    mov $-1, %rcx
    imul %rcx                       # +2^63: does not fit in 64 bits -> CF=OF=1
    pushfq
    pop %r8
    and $0x801, %r8
    PUTS "imul min*-1: "
    call puthex64
    call space
    mov %rdx, %rax
    call puthex64
    call space
    mov %r8, %rax
    call puthex16
    call newline

    mov $1, %rdx                    # 2^64 / 3
    xor %eax, %eax
    mov $3, %rcx
    div %rcx
    PUTS "div 2^64/3: q="
    call puthex64
    PUTS " r="
    mov %rdx, %rax
    call puthex64
    call newline

    mov $-2, %rdx                   # -(2^65) + 5 divided by 7
    mov $5, %rax
    mov $7, %rcx
    idiv %rcx
    PUTS "idiv (-2^65+5)/7: q="
    call puthex64
    PUTS " r="
    mov %rdx, %rax
    call puthex64
    call newline

    mov $-7, %rax                   # remainder takes the dividend's sign
    cqo
    mov $2, %rcx
    idiv %rcx
    PUTS "idiv -7/2: q="
    call puthex64
    PUTS " r="
    mov %rdx, %rax
    call puthex64
    call newline

    # #DE: division by zero, quotient overflow (div and idiv INT_MIN/-1)
    movq $0, de_count(%rip)
    lea 1f(%rip), %rax
    mov %rax, de_resume(%rip)
    xor %ecx, %ecx
    mov $5, %eax
    xor %edx, %edx
    div %rcx
1:  lea 1f(%rip), %rax
    mov %rax, de_resume(%rip)
    mov $3, %rcx
    mov $3, %rdx
    div %rcx
1:  lea 1f(%rip), %rax
    mov %rax, de_resume(%rip)
    mov $0x8000000000000000, %rax
    cqo
    mov $-1, %rcx
    idiv %rcx
1:  PUTHEX "de 3 cases", de_count(%rip)

    # rcl/rcr through CF with counts wider than the operand (8-bit: mod 9 after masking to 5 bits)
    mov $0x81, %eax
    stc
    mov $9, %cl
    rcl %cl, %al                    # 9 mod 9 = 0: unchanged, CF unchanged
    setc %ah
    PUTHEX16 "rcl8 by 9 (al, ah=CF)", %ax
    mov $0x81, %eax
    clc
    mov $10, %cl
    rcl %cl, %al                    # like rcl by 1: al = 0x02, CF = 1
    setc %ah
    PUTHEX16 "rcl8 by 10 (al, ah=CF)", %ax
    mov $0x8000000000000001, %rax
    stc
    mov $65, %cl                    # masked to 1
    rcr %cl, %rax
    setc %cl
    PUTHEX "rcr64 by 65", %rax
    PUTHEX8 "rcr64 CF", %cl

    # 32-bit results zero-extend; 8/16-bit ones do not
    mov $-1, %rax
    add $0, %eax
    PUTHEX "add32 zx", %rax
    mov $-1, %rax
    .byte 0x87, 0xc0                # xchg %eax,%eax (87 /r): zero-extends
    PUTHEX "xchg eax,eax (87)", %rax
    mov $-1, %rax
    .byte 0x90                      # 90 is NOP in 64-bit mode: no zero-extension
    PUTHEX "nop (90)", %rax
    mov $-1, %rax
    mov %eax, %eax
    PUTHEX "mov eax,eax", %rax
    mov $-1, %rax
    movw $0x1234, %ax
    PUTHEX "mov16", %rax
    mov $-1, %rax
    movb $0x12, %al
    movb $0x34, %ah
    PUTHEX "mov8", %rax
    mov $-1, %rax
    movl $0x80000000, %eax
    PUTHEX "movl imm", %rax
    mov $0xffffffff80000000, %rax
    PUTHEX "movq simm32", %rax
    movabs $0x0123456789abcdef, %rax
    PUTHEX "movabs", %rax
    mov $-1, %rax
    mov $-1, %rcx
    cmp %eax, %eax
    cmovne %ecx, %eax               # false, still zero-extends
    PUTHEX "cmovne32 false", %rax
    mov $-1, %r9
    inc %r9d
    PUTHEX "inc r9d", %r9
    mov $-1, %rax
    bswap %eax
    PUTHEX "bswap32", %rax
    mov $-1, %rax
    mov $0, %ecx
    bsf %ecx, %eax                  # source 0: ZF=1; dest not printed (undefined)
    setz %cl
    PUTHEX8 "bsf 0 ZF", %cl

    # byte registers with REX: spl/bpl/sil/dil/r8b..r15b
    mov %rsp, %rbx
    mov %rsp, %rax
    movb $0x5a, %spl
    mov %rsp, %rcx
    mov %rbx, %rsp
    sub %rax, %rcx
    and $0xff, %eax
    add %rax, %rcx
    PUTHEX "spl write", %rcx
    mov $0x1122334455667788, %rsi
    mov $0x99aabbccddeeff00, %rdi
    mov %rsi, %rbp
    xchg %sil, %dil
    add %dil, %bpl
    mov $0x5555, %r12d
    mov %bpl, %r12b
    PUTHEX "rsi", %rsi
    PUTHEX "rdi", %rdi
    PUTHEX "rbp", %rbp
    PUTHEX "r12", %r12
    xor %ebp, %ebp
    mov $0x1234, %eax
    .byte 0x88, 0xe1                # mov %ah, %cl (no REX)
    movzbl %cl, %ecx
    PUTHEX32 "ah via no-REX", %ecx

    # rip-relative and SIB addressing
    lea ripdata(%rip), %rax
    mov $ripdata, %rdx
    sub %rdx, %rax
    PUTHEX "lea rip - abs", %rax
    mov ripdata+8(%rip), %rax
    PUTHEX "mov rip+8", %rax
    lea ripdata(%rip), %rbx
    mov $2, %rcx
    mov -8(%rbx,%rcx,8), %rax
    PUTHEX "sib base+idx*8-8", %rax
    mov $ripdata, %ecx
    mov 16(,%rcx,1), %rax
    PUTHEX "sib no base", %rax
    mov $1, %r13
    mov (%rbx,%r13,8), %rax
    PUTHEX "sib r13 idx", %rax
    mov %rbx, %r13
    mov 0(%r13), %rax               # r13 base needs disp8 encoding
    PUTHEX "r13 base", %rax
    mov %rbx, %r12
    mov 16(%r12), %rax              # r12 base needs SIB
    PUTHEX "r12 base", %rax
    lea ripdata(%rip), %rax
    addr32 mov (%eax), %rdx         # 32-bit address size
    PUTHEX "addr32", %rdx

    # bt with memory operands: register bit offsets reach outside the addressed qword
    lea bitbuf+16(%rip), %rdi
    movq $0, -16(%rdi)
    movq $0, -8(%rdi)
    movq $0, (%rdi)
    movq $0, 8(%rdi)
    mov $100, %rax
    bts %rax, (%rdi)                # bit 100 -> byte 12 bit 4
    mov $-1, %rax
    bts %rax, (%rdi)                # bit -1 -> byte -1 bit 7
    mov $-66, %rax
    lock btsq %rax, (%rdi)          # qword -2, bit 62
    btcw $17, (%rdi)                # imm offset is taken mod 16 for 16-bit operands
    btl $4, 12(%rdi)
    setc %al
    PUTHEX "bitbuf -16", -16(%rdi)
    PUTHEX "bitbuf -8", -8(%rdi)
    PUTHEX "bitbuf 0", (%rdi)
    PUTHEX "bitbuf 8", 8(%rdi)
    PUTHEX8 "bt CF", %al

    # cmpxchg16b (lock): success then failure
    lea mem16(%rip), %rdi
    movq $0x1111, (%rdi)
    movq $0x2222, 8(%rdi)
    mov $0x1111, %rax
    mov $0x2222, %rdx
    mov $0xaaaa, %rbx
    mov $0xbbbb, %rcx
    lock cmpxchg16b (%rdi)
    setz %r8b
    PUTHEX8 "cx16 ok ZF", %r8b
    PUTHEX "cx16 mem lo", (%rdi)
    PUTHEX "cx16 mem hi", 8(%rdi)
    mov $0x1111, %rax
    mov $0x2222, %rdx
    lock cmpxchg16b (%rdi)
    setz %r8b
    PUTHEX8 "cx16 fail ZF", %r8b
    PUTHEX "cx16 rax", %rax
    PUTHEX "cx16 rdx", %rdx
    ret

.section .rodata
.align 8
.set NVALS, 16
vals:
    .quad 0, 1, 2, 0x7f, 0x80, 0xff, 63, 64
    .quad 0x7fffffff, 0x80000000, 0xffffffff, 0x7fffffffffffffff
    .quad 0x8000000000000000, 0xffffffffffffffff, 0x0123456789abcdef, 0xfedcba9876543210
ripdata:
    .quad 0x1111111111111111, 0x2222222222222222, 0x3333333333333333

.section .bss
.align 16
mem16: .skip 16
memq: .skip 8
memo: .skip 16
de_resume: .skip 8
de_count: .skip 8
bitbuf: .skip 32
