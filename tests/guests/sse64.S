# bits: 64
# x87 and SSE in long mode (the native-step engine): CR4.OSFXSR/OSXMMEXCPT on, SSE2 integer and
# double arithmetic, conversions with MXCSR rounding control and sticky flags, x87 arithmetic
# and stores, FCOMI flags, FXSAVE/FXRSTOR round trips, #GP for a misaligned MOVAPS/FXSAVE,
# #NM with CR0.TS (then CLTS), WAIT #NM with MP+TS, #UD/#NM with CR0.EM,
# #UD for SSE with CR4.OSFXSR clear (x87 and MMX still run), #UD for VEX with CR4.OSXSAVE clear.
# Prints only architectural results (no MXCSR_MASK, FIP/FDP or CPUID features).
# expect-exit: 1
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"

.set CR0_MP, 0x2
.set CR0_EM, 0x4
.set CR0_TS, 0x8
.set CR0_NE, 0x20
.set CR4_OSFXSR, 0x200
.set CR4_OSXMMEXCPT, 0x400

# PUTXMM label, xmm: print the two quadwords (high:low) of an XMM register.
.macro PUTXMM label, x
    movdqu \x, xmm_out(%rip)
    PUTS "\label="
    push %rax
    mov xmm_out+8(%rip), %rax
    call puthex64
    PUTS ":"
    mov xmm_out(%rip), %rax
    call puthex64
    call newline
    pop %rax
.endm

.section .text
main64:
    call idt64_init
    PUTS "sse64\n"
    mov %cr0, %rax
    and $~(CR0_EM | CR0_TS), %rax
    or $(CR0_MP | CR0_NE), %rax
    mov %rax, %cr0
    mov %cr4, %rax
    or $(CR4_OSFXSR | CR4_OSXMMEXCPT), %rax
    mov %rax, %cr4
    fninit
    ldmxcsr mxcsr_default(%rip)

    # ---- SSE2 integer
    movdqa v_a(%rip), %xmm0
    paddd v_b(%rip), %xmm0
    PUTXMM "paddd", %xmm0
    pshufd $0x1b, %xmm0, %xmm1
    PUTXMM "pshufd 1b", %xmm1
    movdqa v_w1(%rip), %xmm2
    pmullw v_w2(%rip), %xmm2
    PUTXMM "pmullw", %xmm2
    movdqa v_a(%rip), %xmm3
    psubq v_b(%rip), %xmm3
    PUTXMM "psubq", %xmm3
    pcmpeqd %xmm4, %xmm4
    psrlq $4, %xmm4
    PUTXMM "pcmpeqd+psrlq", %xmm4
    pxor %xmm4, %xmm4
    PUTXMM "pxor", %xmm4
    mov $0x1122334455667788, %rax
    movq %rax, %xmm5
    punpcklqdq %xmm5, %xmm5
    PUTXMM "movq+punpcklqdq", %xmm5
    movd %xmm0, %ecx
    PUTHEX32 "movd ecx", %ecx
    pmovmskb %xmm0, %edx
    PUTHEX32 "pmovmskb", %edx
    # unaligned load and store
    movdqu v_bytes+3(%rip), %xmm6
    movdqu %xmm6, scratch+5(%rip)
    PUTHEX "movdqu round trip", scratch+5(%rip)

    # ---- SSE2 double
    movsd d_1_5(%rip), %xmm0
    movsd d_2_25(%rip), %xmm1
    movapd %xmm0, %xmm2
    addsd %xmm1, %xmm2
    movq %xmm2, %rax
    PUTHEX "addsd", %rax
    movapd %xmm0, %xmm2
    mulsd %xmm1, %xmm2
    movq %xmm2, %rax
    PUTHEX "mulsd", %rax
    movapd %xmm0, %xmm2
    divsd %xmm1, %xmm2
    movq %xmm2, %rax
    PUTHEX "divsd", %rax
    sqrtsd %xmm1, %xmm2
    movq %xmm2, %rax
    PUTHEX "sqrtsd", %rax
    mov $-7, %rax
    cvtsi2sd %rax, %xmm3
    movq %xmm3, %rax
    PUTHEX "cvtsi2sd", %rax
    cvttsd2si d_m3_75(%rip), %rax
    PUTHEX "cvttsd2si", %rax
    cvtsd2ss %xmm0, %xmm4
    movd %xmm4, %eax
    PUTHEX32 "cvtsd2ss", %eax
    movapd v_pd(%rip), %xmm5
    addpd %xmm5, %xmm5
    PUTXMM "addpd", %xmm5
    stmxcsr mx_out(%rip)
    PUTHEX32 "mxcsr after inexact divsd", mx_out(%rip)
    comisd %xmm1, %xmm0
    setb %al
    PUTHEX8 "comisd 1.5<2.25 cf", %al

    # ---- MXCSR rounding control
    cvtsd2si d_2_5(%rip), %rax
    PUTHEX "cvtsd2si 2.5 nearest", %rax
    ldmxcsr mxcsr_down(%rip)
    stmxcsr mx_out(%rip)
    PUTHEX32 "ldmxcsr/stmxcsr", mx_out(%rip)
    cvtsd2si d_2_5(%rip), %rax
    PUTHEX "cvtsd2si 2.5 down", %rax
    cvtsd2si d_m2_5(%rip), %rax
    PUTHEX "cvtsd2si -2.5 down", %rax
    stmxcsr mx_out(%rip)
    PUTHEX32 "mxcsr after inexact cvt", mx_out(%rip)
    ldmxcsr mxcsr_default(%rip)

    # ---- x87
    fninit
    fnstcw fcw_out(%rip)
    PUTHEX16 "fcw after fninit", fcw_out(%rip)
    fld1
    fadd %st(0), %st(0)
    fld1
    faddp
    fstpl d_out(%rip)
    PUTHEX "fld1+fadd+faddp", d_out(%rip)
    fildl i_7(%rip)
    fildl i_6(%rip)
    fmulp
    fistpl i_out(%rip)
    PUTHEX32 "fild*fild fistp", i_out(%rip)
    fldpi
    fstpl d_out(%rip)
    PUTHEX "fldpi", d_out(%rip)
    fldl d_2_25(%rip)
    fsqrt
    fstpl d_out(%rip)
    PUTHEX "fsqrt 2.25", d_out(%rip)
    fldl d_1_5(%rip)
    fdivl d_2_25(%rip)
    fmull d_2_25(%rip)
    fistpl i_out(%rip)
    PUTHEX32 "fdiv fmul fistp", i_out(%rip)
    fld1
    fldl d_2_25(%rip)                 # st0=2.25 st1=1
    fcomi %st(1), %st(0)
    seta %al
    PUTHEX8 "fcomi 2.25>1 (above)", %al
    fstp %st(0)
    fstp %st(0)
    fnstsw %ax
    PUTHEX16 "fnstsw (stack empty)", %ax
    fldt t_val(%rip)
    fstpt t_out(%rip)
    PUTHEX "fld/fstp m80 low", t_out(%rip)
    PUTHEX16 "fld/fstp m80 high", t_out+8(%rip)

    # ---- FXSAVE / FXRSTOR round trip
    movdqa v_a(%rip), %xmm0
    movdqa v_b(%rip), %xmm15
    fninit
    fld1
    fldpi
    fxsave fxbuf1(%rip)
    PUTHEX16 "fxsave fcw", fxbuf1(%rip)
    PUTHEX16 "fxsave fsw", fxbuf1+2(%rip)
    PUTHEX8 "fxsave ftw", fxbuf1+4(%rip)
    PUTHEX32 "fxsave mxcsr", fxbuf1+24(%rip)
    PUTHEX "fxsave xmm15 low", fxbuf1+160+15*16(%rip)
    pxor %xmm0, %xmm0
    pxor %xmm15, %xmm15
    fninit
    ldmxcsr mxcsr_down(%rip)
    fxrstor fxbuf1(%rip)
    fxsave64 fxbuf2(%rip)
    lea fxbuf1(%rip), %rsi
    lea fxbuf2(%rip), %rdi
    call fx_compare
    PUTHEX8 "fxrstor+fxsave64 differences", %al
    movq %xmm15, %rax
    PUTHEX "xmm15 after fxrstor", %rax
    fstpl d_out(%rip)
    PUTHEX "st0 after fxrstor", d_out(%rip)
    fstp %st(0)
    stmxcsr mx_out(%rip)
    PUTHEX32 "mxcsr after fxrstor", mx_out(%rip)

    # ---- #GP: misaligned MOVAPS and FXSAVE; MOVUPS is fine. (LDMXCSR with reserved bits
    # raises #GP(0) on hardware and in btvisor, but not in QEMU's TCG: tested in
    # translator/tests/native_step.rs instead.)
    EXPECT_EXC 1f, 2f
1:  movaps v_a+8(%rip), %xmm0
2:  movups v_a+4(%rip), %xmm0
    PUTXMM "movups", %xmm0
    EXPECT_EXC 1f, 2f
1:  fxsave fxbuf1+8(%rip)
2:

    # ---- CR0.TS: #NM for x87, SSE, MMX; WAIT too (MP=1); CLTS
    mov %cr0, %rax
    or $CR0_TS, %rax
    mov %rax, %cr0
    EXPECT_EXC 1f, 2f
1:  addps %xmm1, %xmm0
2:  EXPECT_EXC 1f, 2f
1:  fld1
2:  EXPECT_EXC 1f, 2f
1:  paddb %mm1, %mm0
2:  EXPECT_EXC 1f, 2f
1:  fwait
2:  EXPECT_EXC 1f, 2f
1:  fxsave fxbuf2(%rip)
2:  clts
    fld1
    fistpl i_out(%rip)
    PUTHEX32 "after clts fld1", i_out(%rip)

    # ---- CR0.EM: #UD for SSE and MMX, #NM for x87; WAIT runs (TS clear)
    mov %cr0, %rax
    or $CR0_EM, %rax
    mov %rax, %cr0
    EXPECT_EXC 1f, 2f
1:  addps %xmm1, %xmm0
2:  EXPECT_EXC 1f, 2f
1:  paddb %mm1, %mm0
2:  EXPECT_EXC 1f, 2f
1:  fld1
2:  fwait
    PUTS "wait with em runs\n"
    mov %cr0, %rax
    and $~CR0_EM, %rax
    mov %rax, %cr0

    # ---- CR4.OSFXSR clear: #UD for SSE and LDMXCSR; x87 and MMX run
    mov %cr4, %rax
    and $~CR4_OSFXSR, %rax
    mov %rax, %cr4
    EXPECT_EXC 1f, 2f
1:  addps %xmm1, %xmm0
2:  EXPECT_EXC 1f, 2f
1:  ldmxcsr mxcsr_default(%rip)
2:  EXPECT_EXC 1f, 2f
1:  movq %rax, %xmm0
2:  fildl i_7(%rip)
    fistpl i_out(%rip)
    PUTHEX32 "x87 without osfxsr", i_out(%rip)
    movq v_a(%rip), %mm0
    paddd v_b(%rip), %mm0
    movq %mm0, %rax
    emms
    PUTHEX "mmx without osfxsr", %rax
    mov %cr4, %rax
    or $CR4_OSFXSR, %rax
    mov %rax, %cr4

    # ---- VEX with CR4.OSXSAVE clear: #UD
    EXPECT_EXC 1f, 2f
1:  vaddps %xmm2, %xmm1, %xmm0
2:  EXPECT_EXC 1f, 2f
1:  vpxor %ymm2, %ymm1, %ymm0
2:
    PUTS "done\n"
    xor %eax, %eax
    ret

# fx_compare: count differing bytes of the FXSAVE images at %rsi and %rdi in FCW/FSW/FTW,
# MXCSR and the register area (FOP/FIP/FDP and MXCSR_MASK are not compared). Result in %al.
fx_compare:
    push %rcx
    push %rdx
    xor %eax, %eax
    xor %ecx, %ecx
1:  cmp $6, %ecx
    jb 3f
    cmp $24, %ecx
    jb 4f
    cmp $28, %ecx
    jb 3f
    cmp $32, %ecx
    jb 4f
    cmp $416, %ecx
    jae 5f
3:  movb (%rsi,%rcx), %dl
    cmp (%rdi,%rcx), %dl
    je 4f
    inc %eax
4:  inc %ecx
    jmp 1b
5:  pop %rdx
    pop %rcx
    ret

.section .data
.align 16
v_a:   .long 1, 2, 3, 0x7fffffff
v_b:   .long 10, 20, 30, 1
v_w1:  .word 1, 2, 3, 4, 0x100, 0x8000, 0xffff, 7
v_w2:  .word 5, 6, 7, 8, 0x100, 2, 0xffff, 9
v_pd:  .double 1.25, -0.5
v_bytes: .byte 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb
       .byte 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x02, 0x03, 0x04
.align 8
d_1_5:  .double 1.5
d_2_25: .double 2.25
d_m3_75: .double -3.75
d_2_5:  .double 2.5
d_m2_5: .double -2.5
i_7:    .long 7
i_6:    .long 6
mxcsr_default: .long 0x1f80
mxcsr_down:    .long 0x3f80
.align 16
t_val:  .quad 0xc90fdaa22168c235
        .word 0x4000
.section .bss
.align 16
xmm_out: .skip 16
scratch: .skip 32
d_out:  .skip 8
i_out:  .skip 8
mx_out: .skip 4
fcw_out: .skip 4
.align 16
t_out:  .skip 16
.align 16
fxbuf1: .skip 512
fxbuf2: .skip 512
