# ALU instructions in 32-bit protected mode: results and the architecturally defined flags of
# integer arithmetic, logic, shifts/rotates, multiply/divide, bit operations, setcc/cmovcc/jcc,
# exchange/compare-exchange (also locked), lea forms and BCD adjust. Each group runs over a table
# of edge operands and prints a running checksum ("add8=..."); a few hand-checked samples print
# the plain values. The flags folded into a checksum are masked to those the SDM defines.
# expect-exit: 1
.include "multiboot.inc"
.include "serial32.inc"
.include "util32.inc"

.set F_CF, 0x001
.set F_PF, 0x004
.set F_AF, 0x010
.set F_ZF, 0x040
.set F_SF, 0x080
.set F_OF, 0x800
.set F_ALL, 0x8D5
.set F_LOGIC, 0x8C5                  # AF undefined after AND/OR/XOR/TEST
.set F_MUL, 0x801                    # CF/OF only after MUL/IMUL

.section .data
.align 4
vals:
    .long 0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff
    .long 0x12345678, 0xdeadbeef
vals_end:
flags_in: .long 0x002, 0x8D7         # all arithmetic flags clear / set
counts:   .long 0, 1, 2, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, -1
cnt3:     .long 3, -1
cnt1:     .long 1, -1
cnt8:     .long 8, -1
cnt31:    .long 31, -1
cksum:    .long 0
p_i:      .long 0
p_j:      .long 0
p_k:      .long 0
p_cnt:    .long 0
sh_size:  .long 32
sh_kind:  .long 0
sh_mask:  .long 0
.align 8
bm0: .long 0
bm1: .long 0
bm2: .long 0
bm3: .long 0
q64: .long 0, 0

.section .text
.globl _start
_start:
    mov $stack_top, %esp
    jmp main

# fold: cksum = rol(cksum, 7) + %eax
fold:
    push %edx
    mov cksum, %edx
    rol $7, %edx
    add %eax, %edx
    mov %edx, cksum
    pop %edx
    ret

# run_pairs: for every (a, b) in vals x vals and both flag inputs, call %esi with
# eax=a, ebx=b, ecx=b^0x5a5a5a5a, edx=0x13579bdf, then fold eax, ebx, ecx, edx, EFLAGS & %edi.
# Returns the checksum in %eax.
run_pairs:
    movl $0, cksum
    movl $0, p_i
1:  movl $0, p_j
2:  movl $0, p_k
3:  mov p_i, %eax
    mov vals(,%eax,4), %eax
    mov p_j, %ebx
    mov vals(,%ebx,4), %ebx
    mov %ebx, %ecx
    xor $0x5a5a5a5a, %ecx
    mov $0x13579bdf, %edx
    push %eax
    mov p_k, %eax
    pushl flags_in(,%eax,4)
    mov 4(%esp), %eax
    popf
    call *%esi
    pushf
    call fold
    mov %ebx, %eax
    call fold
    mov %ecx, %eax
    call fold
    mov %edx, %eax
    call fold
    pop %eax
    and %edi, %eax
    call fold
    add $4, %esp
    incl p_k
    cmpl $2, p_k
    jb 3b
    incl p_j
    cmpl $(vals_end - vals) / 4, p_j
    jb 2b
    incl p_i
    cmpl $(vals_end - vals) / 4, p_i
    jb 1b
    mov cksum, %eax
    ret

# run_shift: for every a in vals, count c in the table at %edi (ends with -1) and both flag
# inputs, call %esi with eax=a, ebx=a^0xa5c3f00f, ecx=c, then fold eax, ebx, EFLAGS & mask,
# where the mask follows the SDM for operand size sh_size and kind sh_kind (0 shift, 1 rotate,
# 2 rotate through carry, 3 double shift; double shifts skip counts >= size).
run_shift:
    movl $0, cksum
    movl $0, p_i
1:  movl $0, p_j
2:  movl $0, p_k
    mov p_j, %eax
    mov (%edi,%eax,4), %ecx
    cmp $-1, %ecx
    je 8f
    call shift_mask
    test %eax, %eax
    jz 7f                            # skipped count
    mov %eax, sh_mask
3:  mov p_i, %eax
    mov vals(,%eax,4), %eax
    mov %eax, %ebx
    xor $0xa5c3f00f, %ebx
    mov p_j, %ecx
    mov (%edi,%ecx,4), %ecx
    push %eax
    mov p_k, %eax
    pushl flags_in(,%eax,4)
    mov 4(%esp), %eax
    popf
    call *%esi
    pushf
    call fold
    mov %ebx, %eax
    call fold
    pop %eax
    and sh_mask, %eax
    call fold
    add $4, %esp
    incl p_k
    cmpl $2, p_k
    jb 3b
7:  incl p_j
    jmp 2b
8:  incl p_i
    cmpl $(vals_end - vals) / 4, p_i
    jb 1b
    mov cksum, %eax
    ret

# shift_mask: %ecx = count -> %eax = defined-flags mask (0: skip this count).
shift_mask:
    push %ecx
    and $31, %ecx
    mov $F_ALL, %eax
    jz 9f                            # count 0: no flag changes
    cmpl $1, sh_kind
    je 5f
    cmpl $2, sh_kind
    je 5f
    mov $(F_CF | F_PF | F_ZF | F_SF), %eax
    cmpl $3, sh_kind
    jne 2f
    cmp sh_size, %ecx
    jb 3f
    xor %eax, %eax                   # double shift by >= size: undefined result
    jmp 9f
2:  cmp sh_size, %ecx                # shl/shr/sar: CF undefined when count >= size
    jb 3f
    and $~F_CF, %eax
3:  cmp $1, %ecx
    jne 9f
    or $F_OF, %eax
    jmp 9f
5:  mov $(F_ALL & ~F_OF), %eax       # rotates: only CF (and OF for 1-bit) change
    cmp $1, %ecx
    jne 9f
    or $F_OF, %eax
9:  pop %ecx
    ret

# run_cond: %esi(eax = 0) returns eax = 0/1 under each of the 32 combinations of
# CF(bit 0) PF(1) ZF(2) SF(3) OF(4) of the combination index; returns the 32-bit truth mask.
run_cond:
    push %ebx
    push %ecx
    push %edx
    xor %ecx, %ecx
    xor %edx, %edx
1:  mov $0x002, %ebx
    test $1, %cl
    jz 2f
    or $F_CF, %ebx
2:  test $2, %cl
    jz 2f
    or $F_PF, %ebx
2:  test $4, %cl
    jz 2f
    or $F_ZF, %ebx
2:  test $8, %cl
    jz 2f
    or $F_SF, %ebx
2:  test $16, %cl
    jz 2f
    or $F_OF, %ebx
2:  push %ebx
    xor %eax, %eax
    popf
    push %ecx
    push %edx
    call *%esi
    pop %edx
    pop %ecx
    and $1, %eax
    shl %cl, %eax
    or %eax, %edx
    inc %ecx
    cmp $32, %ecx
    jb 1b
    mov %edx, %eax
    pop %edx
    pop %ecx
    pop %ebx
    ret

# run_bcd: for al = 0..255 (ah = 0x12) and flag inputs none/CF/AF/CF+AF, call %esi and fold
# eax and EFLAGS & %edi.
run_bcd:
    movl $0, cksum
    movl $0, p_i
1:  movl $0, p_k
2:  mov p_k, %ebx
    mov bcd_flags(,%ebx,4), %ebx
    mov p_i, %eax
    or $0x1200, %eax
    push %ebx
    popf
    call *%esi
    pushf
    call fold
    pop %eax
    and %edi, %eax
    call fold
    incl p_k
    cmpl $4, p_k
    jb 2b
    incl p_i
    cmpl $256, p_i
    jb 1b
    mov cksum, %eax
    ret
.section .data
bcd_flags: .long 0x002, 0x003, 0x012, 0x013
.section .text

# sample: run %esi once with eax=a, ebx=ecx=b, edx=0x13579bdf, flags in %ebp
# (a and b on the stack: 4(%esp)=a, 8(%esp)=b) and print "eax=.. edx=.. fl=..".
sample:
    mov 4(%esp), %eax
    mov 8(%esp), %ebx
    mov %ebx, %ecx
    mov $0x13579bdf, %edx
    push %ebp
    popf
    call *%esi
    pushf
    PUTS " eax="
    call puthex32
    PUTS " edx="
    push %eax
    mov %edx, %eax
    call puthex32
    PUTS " fl="
    mov 4(%esp), %eax
    and %edi, %eax
    call puthex16
    call newline
    pop %eax
    add $4, %esp
    ret

# FN name, insns...: define fn_name as the instructions followed by ret.
.macro FN name, body:vararg
    .section .text
fn_\name:
    \body
    ret
.endm
# PAIRS name, mask: run fn_name over all operand pairs and print "name=checksum".
.macro PAIRS name, mask
    mov $fn_\name, %esi
    mov $\mask, %edi
    call run_pairs
    PUTS "\name="
    call puthex32
    call newline
.endm
# SHIFT name, size, kind, table: run fn_name over vals x counts and print "name=checksum".
.macro SHIFT name, size, kind, table=counts
    mov $fn_\name, %esi
    mov $\table, %edi
    movl $\size, sh_size
    movl $\kind, sh_kind
    call run_shift
    PUTS "\name="
    call puthex32
    call newline
.endm
# SAMPLE name, mask, a, b, flags: print "name(a,b): eax=.. edx=.. fl=..".
.macro SAMPLE name, mask, a, b, flags=0x002
    PUTS "\name(\a,\b):"
    mov $fn_\name, %esi
    mov $\mask, %edi
    mov $\flags, %ebp
    push $\b
    push $\a
    call sample
    add $8, %esp
.endm

# ---- instruction bodies ----
.irp op, add, adc, sub, sbb, and, or, xor, cmp, test, xchg
FN \op\()8, \op %bl, %al
FN \op\()16, \op %bx, %ax
FN \op\()32, \op %ebx, %eax
.endr
.section .text
fn_add8h:
    add %bh, %ah
    adc %ch, %dh
    ret
.section .text
fn_addimm:
    add $0x80, %al
    adc $0x7fff, %bx
    sub $-1, %eax
    sbb $0x80000000, %ecx
    ret
.section .text
fn_addmem:
    mov %ebx, bm0
    add %eax, bm0
    mov bm0, %edx
    ret
.section .text
fn_submem:
    mov %ebx, bm0
    subw $0x8000, bm0
    sbbb %al, bm0+1
    mov bm0, %edx
    ret
.irp op, neg, not, inc, dec
FN \op\()8, \op %al
FN \op\()16, \op %ax
FN \op\()32, \op %eax
.endr
.section .text
fn_incmem:
    mov %eax, bm0
    incb bm0
    decw bm0+1
    negl bm0
    notw bm0+2
    mov bm0, %edx
    ret
FN mul8, mul %bl
FN mul16, mul %bx
FN mul32, mul %ebx
FN imul8, imul %bl
FN imul16, imul %bx
FN imul32, imul %ebx
FN imul2_16, imul %bx, %ax
FN imul2_32, imul %ebx, %eax
.section .text
fn_imul3_16:
    imul $-3, %bx, %ax
    imul $0x1234, %cx, %dx
    ret
FN imul3_32, imul $0x12345, %ebx, %eax
FN imul3_32b, imul $-7, %ebx, %eax
.section .text
fn_div8:
    test %bl, %bl
    jz 1f
    mov %bl, %ah
    shr %ah
    div %bl
1:
    ret
.section .text
fn_div16:
    test %bx, %bx
    jz 1f
    mov %bx, %dx
    shr %dx
    div %bx
1:
    ret
.section .text
fn_div32:
    test %ebx, %ebx
    jz 1f
    mov %ebx, %edx
    shr %edx
    div %ebx
1:
    ret
.section .text
fn_idiv8:
    test %bl, %bl
    jz 1f
    cmp $0xff, %bl
    jne 2f
    cmp $0x80, %al
    je 1f
2:
    cbw
    idiv %bl
1:
    ret
.section .text
fn_idiv16:
    test %bx, %bx
    jz 1f
    cmp $0xffff, %bx
    jne 2f
    cmp $0x8000, %ax
    je 1f
2:
    cwd
    idiv %bx
1:
    ret
.section .text
fn_idiv32:
    test %ebx, %ebx
    jz 1f
    cmp $-1, %ebx
    jne 2f
    cmp $0x80000000, %eax
    je 1f
2:
    cdq
    idiv %ebx
1:
    ret
FN bt16, bt %bx, %ax
FN bts16, bts %bx, %ax
FN btr16, btr %bx, %ax
FN btc16, btc %bx, %ax
FN bt32, bt %ebx, %eax
FN bts32, bts %ebx, %eax
FN btr32, btr %ebx, %eax
FN btc32, btc %ebx, %eax
.section .text
fn_btimm:
    bts $31, %eax
    btr $0, %ecx
    btc $17, %ax
    bt $7, %edx
    ret
.section .text
fn_btmem:
    mov %eax, bm0
    mov %ebx, bm1
    mov %eax, bm2
    mov %ecx, bm3
    and $0x7f, %ebx
    sub $32, %ebx
    btc %ebx, bm1
    bts %bx, bm2
    mov bm0, %eax
    mov bm1, %ecx
    mov bm2, %edx
    mov bm3, %ebx
    ret
.section .text
fn_bsf16:
    mov $0x1111, %eax
    bsf %bx, %ax
    jnz 1f
    mov $0, %eax
1:
    ret
.section .text
fn_bsf32:
    bsf %ebx, %eax
    jnz 1f
    mov $0, %eax
1:
    ret
.section .text
fn_bsr16:
    mov $0x1111, %eax
    bsr %bx, %ax
    jnz 1f
    mov $0, %eax
1:
    ret
.section .text
fn_bsr32:
    bsr %ebx, %eax
    jnz 1f
    mov $0, %eax
1:
    ret
.section .text
fn_bswap:
    bswap %eax
    bswap %ebx
    bswap %ecx
    ret
.section .text
fn_movx:
    movzbl %bl, %eax
    movsbw %bl, %cx
    movswl %bx, %edx
    movzbw %bh, %bx
    ret
.section .text
fn_movx2:
    movsbl %al, %ebx
    movzwl %ax, %ecx
    mov %eax, bm0
    movsbl bm0+1, %edx
    movswl bm0+2, %eax
    ret
FN xadd8, xadd %bl, %al
FN xadd16, xadd %bx, %ax
FN xadd32, xadd %ebx, %eax
.section .text
fn_lxadd:
    mov %ebx, bm0
    lock xadd %eax, bm0
    mov bm0, %edx
    ret
.section .text
fn_xchgmem:
    mov %ebx, bm0
    xchg %eax, bm0
    xchgw %cx, bm0+1
    lock xchgb %dl, bm0+3
    mov bm0, %ebx
    ret
FN cmpxchg8, cmpxchg %cl, %bl
FN cmpxchg16, cmpxchg %cx, %bx
FN cmpxchg32, cmpxchg %ecx, %ebx
.section .text
fn_lcmpxchg:
    mov %ebx, bm0
    lock cmpxchg %ecx, bm0
    mov bm0, %edx
    ret
.section .text
fn_cmpxchg8b:
    mov %ebx, q64
    mov %eax, q64+4
    mov %eax, %edx
    lock cmpxchg8b q64
    mov q64, %ebx
    mov q64+4, %ecx
    ret
.section .text
fn_cmpxchg8bn:
    mov %eax, q64
    mov %eax, q64+4
    mov %eax, %edx
    cmpxchg8b q64
    mov q64, %ebx
    mov q64+4, %ecx
    ret
.section .text
fn_lea:
    push %esi
    mov %eax, %esi
    lea 0x10(%eax,%ebx,4), %ecx
    lea -1(%ebx,%ebx,8), %edx
    lea (,%eax,2), %eax
    lea 0x12345678(%ebx), %ebx
    xor %esi, %ebx
    pop %esi
    ret
.section .text
fn_lea16:
    push %esi
    mov %eax, %esi
    lea 0x7fff(%bx,%si), %ecx
    lea -2(%bp,%di), %edx
    lea 0x8000(%ebx), %ax
    pop %esi
    ret
FN daa, daa
FN das, das
FN aaa, aaa
FN aas, aas
FN aam, aam
FN aad, aad
FN aam7, aam $7
FN aad7, aad $7

# shifts: by 1 (D0/D1), by cl (D2/D3) and by immediate (C0/C1)
.irp op, shl, shr, sar, rol, ror, rcl, rcr
.section .text
fn_\op\()1_8:
    \op %al
    \op %bl
    ret
.section .text
fn_\op\()1_16:
    \op %ax
    \op %bx
    ret
.section .text
fn_\op\()1_32:
    \op %eax
    \op %ebx
    ret
FN \op\()cl_8, \op %cl, %al
FN \op\()cl_16, \op %cl, %ax
FN \op\()cl_32, \op %cl, %eax
FN \op\()i3_32, \op $3, %eax
FN \op\()i8_16, \op $8, %ax
FN \op\()i31_8, \op $31, %al
.endr
FN shldcl_16, shld %cl, %bx, %ax
FN shldcl_32, shld %cl, %ebx, %eax
FN shrdcl_16, shrd %cl, %bx, %ax
FN shrdcl_32, shrd %cl, %ebx, %eax
FN shldi3_32, shld $3, %ebx, %eax
FN shrdi1_32, shrd $1, %ebx, %eax
FN shldi8_16, shld $8, %bx, %ax
FN shrdi31_32, shrd $31, %ebx, %eax
.section .text
fn_shlmem:
    mov %eax, bm0
    shll %cl, bm0
    rorw %cl, bm0+2
    sarb bm0+1
    mov bm0, %eax
    ret

.irp cc, o, no, b, ae, e, ne, be, a, s, ns, p, np, l, ge, le, g
FN set\cc, set\cc %al
.section .text
fn_cmov\cc:
    mov $1, %ebx
    cmov\cc %ebx, %eax
    mov $0x5555, %ecx
    cmov\cc %bx, %cx
    cmp $0x5555, %cx
    je 1f
    or $2, %eax
1:
    ret
.section .text
fn_j\cc:
    j\cc 1f
    ret
1:
    mov $1, %eax
    ret
.endr

.section .text
main:
    PUTS "alu32\n"
    # --- hand-checked samples (values and defined flags) ---
    SAMPLE add32, F_ALL, 0x7fffffff, 1
    SAMPLE add8, F_ALL, 0xff, 1
    SAMPLE adc16, F_ALL, 0xffff, 0, 0x003
    SAMPLE sub32, F_ALL, 0, 1
    SAMPLE sbb8, F_ALL, 0x80, 0, 0x003
    SAMPLE cmp32, F_ALL, 0x80000000, 1
    SAMPLE and32, F_LOGIC, 0xf0f0f0f0, 0x0ff00ff0
    SAMPLE neg32, F_ALL, 0x80000000, 0
    SAMPLE inc8, F_ALL, 0x7f, 0, 0x003
    SAMPLE dec16, F_ALL, 0x8000, 0
    SAMPLE mul32, F_MUL, 0xffffffff, 0xffffffff
    SAMPLE imul32, F_MUL, 0xffffffff, 0xffffffff
    SAMPLE imul2_16, F_MUL, 0x100, 0x80
    SAMPLE div32, 0, 0x12345678, 0x100
    SAMPLE idiv32, 0, 0xfffffff9, 2
    SAMPLE shlcl_32, F_CF|F_ZF|F_SF|F_PF|F_OF, 0x80000001, 1
    SAMPLE sarcl_8, F_CF|F_ZF|F_SF|F_PF, 0x81, 3
    SAMPLE rcrcl_32, F_CF|F_OF, 0x00000001, 1, 0x003
    SAMPLE rolcl_16, F_CF, 0x8001, 4
    SAMPLE shldcl_32, F_CF|F_ZF|F_SF|F_PF, 0x12345678, 8
    SAMPLE bsr32, F_ZF, 0, 0x00010000
    SAMPLE bts32, F_CF, 0x80000000, 63
    SAMPLE cmpxchg32, F_ALL, 5, 5
    SAMPLE daa, F_CF|F_AF|F_ZF|F_SF|F_PF, 0x9a, 0
    SAMPLE aam, F_ZF|F_SF|F_PF, 0x4f, 0
    # --- checksums over all operand pairs ---
.irp op, add, adc, sub, sbb, cmp
    PAIRS \op\()8, F_ALL
    PAIRS \op\()16, F_ALL
    PAIRS \op\()32, F_ALL
.endr
.irp op, and, or, xor, test
    PAIRS \op\()8, F_LOGIC
    PAIRS \op\()16, F_LOGIC
    PAIRS \op\()32, F_LOGIC
.endr
    PAIRS add8h, F_ALL
    PAIRS addimm, F_ALL
    PAIRS addmem, F_ALL
    PAIRS submem, F_ALL
.irp op, neg, not, inc, dec
    PAIRS \op\()8, F_ALL
    PAIRS \op\()16, F_ALL
    PAIRS \op\()32, F_ALL
.endr
    PAIRS incmem, F_ALL
.irp op, mul8, mul16, mul32, imul8, imul16, imul32, imul2_16, imul2_32, imul3_16, imul3_32, imul3_32b
    PAIRS \op, F_MUL
.endr
.irp op, div8, div16, div32, idiv8, idiv16, idiv32
    PAIRS \op, 0
.endr
.irp op, bt16, bts16, btr16, btc16, bt32, bts32, btr32, btc32, btimm, btmem
    PAIRS \op, F_CF
.endr
.irp op, bsf16, bsf32, bsr16, bsr32
    PAIRS \op, F_ZF
.endr
.irp op, bswap, movx, movx2, xchg8, xchg16, xchg32, xchgmem, cmpxchg8b, cmpxchg8bn, lea, lea16
    PAIRS \op, F_ALL
.endr
.irp op, xadd8, xadd16, xadd32, lxadd, cmpxchg8, cmpxchg16, cmpxchg32, lcmpxchg
    PAIRS \op, F_ALL
.endr
.irp op, shl, shr, sar
    SHIFT \op\()1_8, 8, 0, cnt1
    SHIFT \op\()1_16, 16, 0, cnt1
    SHIFT \op\()1_32, 32, 0, cnt1
    SHIFT \op\()cl_8, 8, 0
    SHIFT \op\()cl_16, 16, 0
    SHIFT \op\()cl_32, 32, 0
    SHIFT \op\()i3_32, 32, 0, cnt3
    SHIFT \op\()i8_16, 16, 0, cnt8
    SHIFT \op\()i31_8, 8, 0, cnt31
.endr
.irp op, rol, ror, rcl, rcr
    SHIFT \op\()1_8, 8, 1, cnt1
    SHIFT \op\()1_16, 16, 1, cnt1
    SHIFT \op\()1_32, 32, 1, cnt1
    SHIFT \op\()cl_8, 8, 1
    SHIFT \op\()cl_16, 16, 1
    SHIFT \op\()cl_32, 32, 1
    SHIFT \op\()i3_32, 32, 1, cnt3
    SHIFT \op\()i8_16, 16, 1, cnt8
    SHIFT \op\()i31_8, 8, 1, cnt31
.endr
    SHIFT shldcl_16, 16, 3
    SHIFT shldcl_32, 32, 3
    SHIFT shrdcl_16, 16, 3
    SHIFT shrdcl_32, 32, 3
    SHIFT shldi3_32, 32, 3, cnt3
    SHIFT shrdi1_32, 32, 3, cnt1
    SHIFT shldi8_16, 16, 3, cnt8
    SHIFT shrdi31_32, 32, 3, cnt31
    SHIFT shlmem, 16, 3, cnt1
    # --- BCD adjust (32-bit mode only) ---
    mov $fn_daa, %esi
    mov $(F_CF|F_AF|F_ZF|F_SF|F_PF), %edi
    call run_bcd
    PUTHEX "daa", %eax
    mov $fn_das, %esi
    call run_bcd
    PUTHEX "das", %eax
    mov $fn_aaa, %esi
    mov $(F_CF|F_AF), %edi
    call run_bcd
    PUTHEX "aaa", %eax
    mov $fn_aas, %esi
    call run_bcd
    PUTHEX "aas", %eax
    mov $(F_ZF|F_SF|F_PF), %edi
.irp op, aam, aad, aam7, aad7
    mov $fn_\op, %esi
    call run_bcd
    PUTHEX "\op", %eax
.endr
    # --- conditions: truth mask over CF(bit0) PF(1) ZF(2) SF(3) OF(4) combinations ---
.irp cc, o, no, b, ae, e, ne, be, a, s, ns, p, np, l, ge, le, g
    PUTS "\cc: set="
    mov $fn_set\cc, %esi
    call run_cond
    call puthex32
    PUTS " cmov="
    mov $fn_cmov\cc, %esi
    call run_cond
    call puthex32
    PUTS " jcc="
    mov $fn_j\cc, %esi
    call run_cond
    call puthex32
    call newline
.endr
    PUTS "done\n"
    mov $0, %al
    call exit

.section .bss
.align 16
    .skip 8192
stack_top:
