# bits: 64
# expect-exit: 1
# XSAVE, XCR0 and AVX/AVX2 in long mode: the x87 / SSE / AVX state components (XCR0 bits 0-2),
# their CPUID leaves, XSETBV / XGETBV, XSAVE / XRSTOR images and faults, and the full 256-bit
# YMM state of two ring-3 tasks switched by a timer-driven XSAVE64 / XRSTOR64. Sections:
#  1. CPUID.1:ECX XSAVE / OSXSAVE / AVX, CPUID.7.0:EBX AVX2 (OSXSAVE clear: CR4.OSXSAVE = 0).
#  2. CR4.OSXSAVE = 0: XGETBV, XSETBV, XSAVE64, XRSTOR64 and a VEX instruction raise #UD.
#  3. CR4.OSXSAVE = 1: CPUID.1 OSXSAVE set, XGETBV = 1, CPUID.0xD.0 EAX[2:0] and EBX (size for
#     the current XCR0), CPUID.0xD.2 (AVX size / offset); XSETBV #GP(0) for 0, 4 (no x87),
#     5 (AVX without SSE), bit 63, ECX = 1; XCR0 = 3: a VEX instruction #UDs; XCR0 = 7.
#  4. kernel AVX/AVX2: vmovdqu, vpaddq, vpxor, vpshufd, vperm2i128, vinserti128, vextracti128,
#     vpbroadcastq, vpinsrq, vpcmpeqq + vpmovmskb / vmovmskpd, vmulpd; vmovdqa to a 32-aligned
#     buffer (a checksum of the results), misaligned vmovdqa #GP(0), vmovdqu misaligned is fine;
#     vzeroupper clears the upper halves (vextractf128), keeps the lower ones.
#  5. XSAVE images (areas pre-filled with the marker byte 0xa5): RFBM = 7 (x87 FCW/FSW/FTW/st0,
#     MXCSR, xmm1 at 160+16, ymm1's upper half at 576+16, XSTATE_BV: the saved bits set, the
#     others kept); RFBM = 2 (plain XSAVE: the x87 and AVX areas and the rest of the header keep
#     the marker, the XMM area matches); RFBM = 4 (only the AVX area and XSTATE_BV bit 2);
#     XCR0 = 3 with EDX:EAX = -1 (the AVX area untouched); a misaligned XSAVE64 #GP(0).
#  6. XRSTOR: XSTATE_BV = 3 with RFBM = 7 zeroes ymm1's upper half; XSTATE_BV = 7 (plain
#     XRSTOR) loads it; RFBM = 4 loads only the upper half; XSTATE_BV[0] = 0 with RFBM = 1 puts
#     the x87 in its initial state (FCW 0x37f, FSW 0, all tags empty) and leaves MXCSR;
#     XSTATE_BV[1] = 0 with RFBM = 2 zeroes the XMM registers (not their upper halves) and still
#     loads MXCSR; #GP(0) for XCOMP_BV != 0, XSTATE_BV bit 63 / bit 3 (not in XCR0), header
#     bytes 16..23 != 0, a misaligned image; a valid image restores without a fault.
#  Not tested here because QEMU 7.2's TCG (the oracle for the expected output) disagrees with
#  the SDM: XSAVE / XRSTOR with CR0.TS = 1 raise #NM (QEMU runs them); XRSTOR of an image whose
#  MXCSR sets reserved bits raises #GP(0) (QEMU loads the bits into MXCSR); XSAVE / XRSTOR with
#  RFBM[2] = 1 and RFBM[1] = 0 store / load MXCSR (QEMU does neither). So no MXCSR is checked
#  with RFBM = 4 (the image's MXCSR equals the register) and TS is only tested with VEX code.
#  7. CR0.TS = 1: VEX (256- and 128-bit) instructions raise #NM, XGETBV and XSETBV run; CLTS.
#  8. two ring-3 tasks with their own PML4s (the same VA 0x40000000 on different frames) start
#     from a kernel-made XSAVE image with XSTATE_BV = 0 (MXCSR 0x1f80, FCW 0x37f in the image)
#     and check that every ymm register is zero, MXCSR = 0x1f80, FCW = 0x37f, FSW = 0; then fill
#     all 256 bits of ymm0-15 with task patterns (vpbroadcastq, vpinsrq, vinserti128), set their
#     own MXCSR, FCW and st0 and spin checking all of it (vptest against the pattern and its
#     complement), preempted by PIT channel 0 (1 kHz) -> 8259 IRQ0 -> vector 0x20, whose handler
#     XSAVE64s the current task (EDX:EAX = -1) into its 64-aligned area, switches CR3 and
#     XRSTOR64s the other task. After exactly 20 switches (the kernel stops switching; the
#     count lives in a user read-only shared page) each task exits by syscall with its error
#     bits (bit n: ymm n, 16: MXCSR, 17: x87, 18: initial state).
# Only architectural values are printed (no XSTATE_BV bit of a component left in its initial
# state, no FIP/FDP/FOP, no MXCSR_MASK, no CPUID.0xD.0 ECX or EAX above bit 2). The exit status
# is 1 (main64 returns 0).
.include "multiboot.inc"
.include "long64.inc"
.include "serial64.inc"
.include "idt64.inc"
.include "ring3_64.inc"

.set CR0_MP, 0x2
.set CR0_EM, 0x4
.set CR0_TS, 0x8
.set CR0_NE, 0x20
.set CR4_OSFXSR, 0x200
.set CR4_OSXMMEXCPT, 0x400
.set CR4_OSXSAVE, 0x40000

.set SYS_TEXIT, 8                      # task exit, rdi = error bits

# user pages: the ring3_64.inc layout (USER_BASE, PRIV_VA, SHARED_VA, USTACK_TOP, the frame pool)

.set N_SWITCHES, 20
.set PIT_COUNT, 1193                   # 1 kHz
.set MARK, 0xA5                        # XSAVE area marker byte
.set XS_SIZE, 1024                     # bytes reserved per XSAVE area (832 used)

# private page: PV_ID .. PV_ST0OUT from ring3_64.inc, then
.set PV_PAT, 0x100                     # 16 x 32 bytes: ymm0-15
.set PV_NPAT, 0x300                    # their complements
.set ERR_MXCSR, 1 << 16
.set ERR_X87, 1 << 17
.set ERR_INIT, 1 << 18

# task control blocks (64-aligned)
.set TCB_XS, 0                         # XSAVE area, XS_SIZE bytes
.set TCB_FRAME, 1024                   # 22 qwords, the idt64.inc frame layout
.set TCB_CR3, 1200
.set TCB_ALIVE, 1208
.set TCB_RESULT, 1216
.set TCB_PRIV, 1224                    # physical address of the private page
.set TCB_SIZE, 2048
.set TCB_SHIFT, 11
# the tasks' FPU / SSE / AVX state (ring3_64.inc hooks): XSAVE64 / XRSTOR64 with EDX:EAX = -1,
# initially an XSAVE image in the initial state (XSTATE_BV = 0, XCOMP_BV = 0, MXCSR 0x1f80,
# FCW 0x37f)
.macro TASK_STATE_INIT
    lea TCB_XS(%rbx), %rdi
    mov $XS_SIZE / 8, %ecx
    xor %eax, %eax
    rep stosq
    movw $0x37f, TCB_XS+0(%rbx)
    movl $0x1f80, TCB_XS+24(%rbx)
.endm
.macro TASK_STATE_SAVE tcb
    mov $-1, %eax
    mov $-1, %edx
    xsave64 TCB_XS(\tcb)
.endm
.macro TASK_STATE_LOAD tcb
    mov $-1, %eax
    mov $-1, %edx
    xrstor64 TCB_XS(\tcb)
.endm

# TRY name, insn: print "name: " and run insn expecting an exception (the default handler
# prints "exc #XX err=.. rip=ref+0000" and resumes after it); "no exception" if none.
.macro TRY name, insn:vararg
    PUTS "\name: "
    EXPECT_EXC 8001f, 8002f
8001: \insn
    movq $0, exc_resume(%rip)
    movq $0, exc_ref(%rip)
    PUTS "no exception\n"
8002:
.endm
# PUTYMM label, reg: print "label=q3:q2:q1:q0" (the upper half first).
.macro PUTYMM label, y
    vmovdqu \y, ymm_out(%rip)
    PUTS "\label="
    call put_ymm_out
.endm
# PUTQ2 label, mem: print "label=hi:lo" for the 16 bytes at mem.
.macro PUTQ2 label, m
    PUTS "\label="
    push %rsi
    lea \m, %rsi
    call put_q2
    pop %rsi
    call newline
.endm
# PUTBIT label, reg32, bit: print "label=0" or "label=1".
.macro PUTBIT label, reg, bit
    push %rax
    mov \reg, %eax
    PUTS "\label="
    shr $\bit, %eax
    and $1, %eax
    add $'0', %al
    call putc
    pop %rax
.endm
# SET_XCR0 hi, lo: XCR0 = hi:lo (ECX = 0).
.macro SET_XCR0 hi, lo
    xor %ecx, %ecx
    mov $\lo, %eax
    mov $\hi, %edx
    xsetbv
.endm

.section .text
main64:
    call idt64_init
    PIC_INIT
    PUTS "xsave64\n"
    # SSE on: CR0.MP|NE, EM=TS=0, CR4.OSFXSR|OSXMMEXCPT (OSXSAVE stays 0 for now)
    mov %cr0, %rax
    and $~(CR0_EM | CR0_TS), %rax
    or $(CR0_MP | CR0_NE), %rax
    mov %rax, %cr0
    mov %cr4, %rax
    or $(CR4_OSFXSR | CR4_OSXMMEXCPT), %rax
    and $~CR4_OSXSAVE, %rax
    mov %rax, %cr4
    fninit
    ldmxcsr mx_1f80(%rip)

    # ---- 1. CPUID
    PUTS "-- cpuid\n"
    call show_cpuid_bits

    # ---- 2. CR4.OSXSAVE = 0: #UD
    PUTS "-- cr4.osxsave=0\n"
    xor %ecx, %ecx
    TRY "xgetbv", xgetbv
    xor %ecx, %ecx
    xor %edx, %edx
    mov $1, %eax
    TRY "xsetbv 1", xsetbv
    mov $7, %eax
    xor %edx, %edx
    TRY "xsave64", xsave64 xs_a(%rip)
    TRY "xrstor64", xrstor64 xs_a(%rip)
    TRY "vxorps ymm", vxorps %ymm0, %ymm0, %ymm0

    # ---- 3. CR4.OSXSAVE = 1: XCR0
    PUTS "-- cr4.osxsave=1, xcr0\n"
    mov %cr4, %rax
    or $CR4_OSXSAVE, %rax
    mov %rax, %cr4
    call show_cpuid_bits
    call show_xcr0
    call show_cpuid_d
    mov $0xd, %eax
    mov $2, %ecx
    cpuid
    PUTS "cpuid.d.2 (avx) eax="
    mov %eax, %eax
    call puthex32
    PUTS " ebx="
    mov %ebx, %eax
    call puthex32
    call newline
    xor %ecx, %ecx
    xor %edx, %edx
    xor %eax, %eax
    TRY "xsetbv 0", xsetbv
    mov $4, %eax
    TRY "xsetbv 4", xsetbv
    mov $5, %eax
    TRY "xsetbv 5", xsetbv
    mov $7, %eax
    mov $0x80000000, %edx
    TRY "xsetbv 8000000000000007", xsetbv
    mov $1, %ecx
    mov $7, %eax
    xor %edx, %edx
    TRY "xsetbv ecx=1 7", xsetbv
    call show_xcr0
    SET_XCR0 0, 3
    PUTS "xsetbv 3 done\n"
    call show_xcr0
    call show_cpuid_d
    TRY "vxorps ymm with xcr0=3", vxorps %ymm0, %ymm0, %ymm0
    TRY "vpaddd xmm with xcr0=3", vpaddd %xmm1, %xmm0, %xmm0
    SET_XCR0 0, 7
    PUTS "xsetbv 7 done\n"
    call show_xcr0
    call show_cpuid_d

    # ---- 4. kernel AVX / AVX2
    PUTS "-- avx\n"
    vmovdqu av(%rip), %ymm0
    vmovdqu bv(%rip), %ymm1
    PUTYMM "vmovdqu ymm0", %ymm0
    vpaddq %ymm1, %ymm0, %ymm2
    PUTYMM "vpaddq", %ymm2
    vpxor %ymm1, %ymm0, %ymm3
    PUTYMM "vpxor", %ymm3
    vpshufd $0x1b, %ymm0, %ymm4
    PUTYMM "vpshufd 1b", %ymm4
    vperm2i128 $0x21, %ymm1, %ymm0, %ymm5
    PUTYMM "vperm2i128 21", %ymm5
    vinserti128 $1, %xmm1, %ymm0, %ymm6
    PUTYMM "vinserti128", %ymm6
    vpcmpeqd %ymm7, %ymm7, %ymm7
    vextracti128 $1, %ymm1, %xmm7
    PUTYMM "vextracti128", %ymm7
    vpbroadcastq av+8(%rip), %ymm8
    PUTYMM "vpbroadcastq", %ymm8
    mov $0x5555aaaa5555aaaa, %rax
    vpinsrq $1, %rax, %xmm8, %xmm9
    PUTYMM "vpinsrq", %ymm9
    vpcmpeqq %ymm0, %ymm6, %ymm10
    PUTYMM "vpcmpeqq", %ymm10
    vpmovmskb %ymm10, %eax
    PUTHEX32 "vpmovmskb", %eax
    vmovmskpd %ymm10, %eax
    PUTHEX32 "vmovmskpd", %eax
    vmovupd dv(%rip), %ymm11
    vmulpd dw(%rip), %ymm11, %ymm11
    PUTYMM "vmulpd", %ymm11
    .irp n, 2,3,4,5,6,7,8,9,10,11
    vmovdqa %ymm\n, results+32*(\n-2)(%rip)
    .endr
    lea results(%rip), %rsi
    mov $40, %ecx
    call checksum
    PUTHEX "vmovdqa results checksum", %rax
    TRY "vmovdqa misaligned store", vmovdqa %ymm2, abuf+16(%rip)
    TRY "vmovdqa misaligned load", vmovdqa abuf+8(%rip), %ymm3
    vmovdqu %ymm2, abuf+8(%rip)
    PUTHEX "vmovdqu misaligned store q0", abuf+8(%rip)
    vmovdqa %ymm2, abuf(%rip)
    vmovdqa abuf(%rip), %ymm12
    PUTYMM "vmovdqa aligned round trip", %ymm12
    vzeroupper
    vextractf128 $1, %ymm2, %xmm13
    PUTYMM "vzeroupper: vextractf128 ymm2", %ymm13
    vextractf128 $1, %ymm12, %xmm13
    PUTYMM "vzeroupper: vextractf128 ymm12", %ymm13
    PUTYMM "vzeroupper: ymm2", %ymm2

    # ---- 5. XSAVE images
    PUTS "-- xsave\n"
    fninit
    fld1
    ldmxcsr mx_3f80(%rip)
    vmovdqu y_p(%rip), %ymm1
    lea xs_a(%rip), %rdi
    call fill_marker
    mov $7, %eax
    xor %edx, %edx
    xsave64 xs_a(%rip)
    PUTS "xsave64 rfbm=7:\n"
    PUTHEX16 "  fcw", xs_a(%rip)
    PUTHEX16 "  fsw", xs_a+2(%rip)
    PUTHEX8 "  ftw", xs_a+4(%rip)
    PUTHEX "  st0 significand", xs_a+32(%rip)
    PUTHEX16 "  st0 exponent", xs_a+40(%rip)
    PUTHEX32 "  mxcsr", xs_a+24(%rip)
    PUTQ2 "  xmm1 (160+16)", xs_a+160+16(%rip)
    PUTQ2 "  ymm1 upper (576+16)", xs_a+576+16(%rip)
    PUTHEX "  xstate_bv", xs_a+512(%rip)
    lea xs_a(%rip), %rsi
    xor %eax, %eax
    mov $520, %ecx
    mov $576, %edx
    call count_changed
    PUTHEX16 "  header bytes 8..63 changed", %ax

    lea xs_b(%rip), %rdi
    call fill_marker
    mov $2, %eax
    xor %edx, %edx
    xsave xs_b(%rip)
    PUTS "xsave rfbm=2:\n"
    lea xs_b(%rip), %rsi
    xor %eax, %eax
    xor %ecx, %ecx
    mov $24, %edx
    call count_changed
    mov $32, %ecx
    mov $160, %edx
    call count_changed
    PUTHEX16 "  x87 bytes (0..23, 32..159) changed", %ax
    xor %eax, %eax
    mov $576, %ecx
    mov $832, %edx
    call count_changed
    PUTHEX16 "  avx bytes (576..831) changed", %ax
    PUTHEX32 "  mxcsr", xs_b+24(%rip)
    lea xs_a(%rip), %rdi
    xor %eax, %eax
    mov $160, %ecx
    mov $416, %edx
    call count_diff
    PUTHEX16 "  xmm area (160..415) differences from rfbm=7", %ax
    PUTHEX "  xstate_bv (was a5a5a5a5a5a5a5a5)", xs_b+512(%rip)
    xor %eax, %eax
    mov $520, %ecx
    mov $576, %edx
    call count_changed
    PUTHEX16 "  header bytes 8..63 changed", %ax

    lea xs_c(%rip), %rdi
    call fill_marker
    movq $0, xs_c+512(%rip)
    mov $4, %eax
    xor %edx, %edx
    xsave64 xs_c(%rip)
    PUTS "xsave64 rfbm=4:\n"
    lea xs_c(%rip), %rsi
    xor %eax, %eax
    xor %ecx, %ecx
    mov $24, %edx
    call count_changed
    mov $32, %ecx
    mov $416, %edx
    call count_changed
    PUTHEX16 "  x87/xmm bytes (0..23, 32..415) changed", %ax
    PUTQ2 "  ymm1 upper (576+16)", xs_c+576+16(%rip)
    PUTHEX "  xstate_bv (was 0)", xs_c+512(%rip)

    SET_XCR0 0, 3
    lea xs_c(%rip), %rdi
    call fill_marker
    movq $0, xs_c+512(%rip)
    mov $-1, %eax
    mov $-1, %edx
    xsave64 xs_c(%rip)
    PUTS "xsave64 xcr0=3 edx:eax=-1:\n"
    lea xs_c(%rip), %rsi
    xor %eax, %eax
    mov $576, %ecx
    mov $832, %edx
    call count_changed
    PUTHEX16 "  avx bytes (576..831) changed", %ax
    PUTQ2 "  xmm1 (160+16)", xs_c+160+16(%rip)
    PUTHEX "  xstate_bv (was 0)", xs_c+512(%rip)
    SET_XCR0 0, 7
    mov $7, %eax
    xor %edx, %edx
    TRY "xsave64 misaligned (+32)", xsave64 xs_c+32(%rip)
    TRY "xsave misaligned (+8)", xsave xs_c+8(%rip)

    # ---- 6. XRSTOR
    PUTS "-- xrstor\n"
    ldmxcsr mx_1f80(%rip)
    fninit
    fld1
    vmovdqu y_p(%rip), %ymm1
    lea img(%rip), %rdi
    xor %eax, %eax
    mov $XS_SIZE / 8, %ecx
    rep stosq
    mov $-1, %eax
    mov $-1, %edx
    xsave64 img(%rip)
    movq $3, img+512(%rip)
    vmovdqu y_q(%rip), %ymm1
    mov $7, %eax
    xor %edx, %edx
    xrstor64 img(%rip)
    PUTYMM "xrstor64 bv=3 rfbm=7 ymm1", %ymm1
    movq $7, img+512(%rip)
    vmovdqu y_q(%rip), %ymm1
    mov $7, %eax
    xrstor img(%rip)
    PUTYMM "xrstor bv=7 rfbm=7 ymm1", %ymm1
    vmovdqu y_q(%rip), %ymm1
    mov $4, %eax
    xrstor64 img(%rip)
    PUTYMM "xrstor64 bv=7 rfbm=4 ymm1", %ymm1
    # x87 initialised from XSTATE_BV[0] = 0; MXCSR not loaded (RFBM = 1)
    fninit
    fldcw fcw_027f(%rip)
    fld1
    fld1
    movq $6, img+512(%rip)
    movl $0x3f80, img+24(%rip)
    mov $1, %eax
    xrstor64 img(%rip)
    fnstcw fcw_out(%rip)
    PUTHEX16 "xrstor64 bv=6 rfbm=1 fcw", fcw_out(%rip)
    fnstsw %ax
    PUTHEX16 "xrstor64 bv=6 rfbm=1 fsw", %ax
    fnstenv fenv(%rip)
    PUTHEX16 "xrstor64 bv=6 rfbm=1 ftw", fenv+8(%rip)
    stmxcsr mx_out(%rip)
    PUTHEX32 "xrstor64 bv=6 rfbm=1 mxcsr (image 3f80)", mx_out(%rip)
    # XMM initialised from XSTATE_BV[1] = 0, MXCSR loaded anyway (RFBM = 2)
    vmovdqu y_q(%rip), %ymm1
    movq $5, img+512(%rip)
    mov $2, %eax
    xrstor64 img(%rip)
    PUTYMM "xrstor64 bv=5 rfbm=2 ymm1", %ymm1
    stmxcsr mx_out(%rip)
    PUTHEX32 "xrstor64 bv=5 rfbm=2 mxcsr (image 3f80)", mx_out(%rip)
    ldmxcsr mx_1f80(%rip)
    movl $0x1f80, img+24(%rip)
    movq $7, img+512(%rip)
    # faults
    mov $7, %eax
    xor %edx, %edx
    movq $1, img+520(%rip)
    TRY "xrstor64 xcomp_bv=1", xrstor64 img(%rip)
    movq $0, img+520(%rip)
    mov $0x8000000000000007, %rcx
    mov %rcx, img+512(%rip)
    TRY "xrstor64 xstate_bv=8000000000000007", xrstor64 img(%rip)
    movq $0xf, img+512(%rip)
    TRY "xrstor64 xstate_bv=f", xrstor64 img(%rip)
    movq $7, img+512(%rip)
    movq $1, img+528(%rip)
    TRY "xrstor64 header bytes 16..23=1", xrstor64 img(%rip)
    movq $0, img+528(%rip)
    TRY "xrstor64 misaligned (+16)", xrstor64 img+16(%rip)
    vmovdqu y_q(%rip), %ymm1
    TRY "xrstor64 valid image", xrstor64 img(%rip)
    PUTYMM "ymm1 after the valid image", %ymm1

    # ---- 7. CR0.TS
    PUTS "-- cr0.ts=1\n"
    mov %cr0, %rax
    or $CR0_TS, %rax
    mov %rax, %cr0
    TRY "vpaddq ymm", vpaddq %ymm1, %ymm0, %ymm2
    TRY "vmovdqu xmm", vmovdqu %xmm0, %xmm1
    call show_xcr0                     # XGETBV and XSETBV ignore CR0.TS
    SET_XCR0 0, 7
    PUTS "xsetbv 7 with ts done\n"
    clts
    vpaddq %ymm1, %ymm1, %ymm2
    PUTYMM "after clts vpaddq", %ymm2

    # ---- 8. two ring-3 tasks, timer switch by XSAVE64 / XRSTOR64
    PUTS "-- tasks\n"
    call user_setup
    call run_tasks
    call tasks_report

    PUTS "done\n"
    mov $0, %al
    ret

# ---------------------------------------------------------------- kernel helpers
# show_cpuid_bits: "cpuid.1:ecx xsave=1 osxsave=N avx=1, cpuid.7.0:ebx avx2=1"
show_cpuid_bits:
    push %rbx
    mov $1, %eax
    xor %ecx, %ecx
    cpuid
    mov %ecx, %r8d
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    mov %ebx, %r9d
    PUTS "cpuid.1:ecx "
    PUTBIT "xsave", %r8d, 26
    PUTBIT " osxsave", %r8d, 27
    PUTBIT " avx", %r8d, 28
    PUTS ", cpuid.7.0:ebx "
    PUTBIT "avx2", %r9d, 5
    call newline
    pop %rbx
    ret

# show_xcr0: "xgetbv=XCR0" (16 digits).
show_xcr0:
    xor %ecx, %ecx
    xgetbv
    shl $32, %rdx
    or %rdx, %rax
    PUTS "xgetbv="
    call puthex64
    jmp newline

# show_cpuid_d: "cpuid.d.0 eax[2:0]=07 ebx=SIZE"
show_cpuid_d:
    push %rbx
    mov $0xd, %eax
    xor %ecx, %ecx
    cpuid
    PUTS "cpuid.d.0 eax[2:0]="
    and $7, %eax
    call puthex8
    PUTS " ebx="
    mov %ebx, %eax
    call puthex32
    call newline
    pop %rbx
    ret

# put_ymm_out: print the 4 qwords of ymm_out, q3 first, and a newline. Preserves registers.
put_ymm_out:
    push %rsi
    lea ymm_out+16(%rip), %rsi
    call put_q2
    PUTS ":"
    lea ymm_out(%rip), %rsi
    call put_q2
    pop %rsi
    jmp newline

# put_q2: print "q1:q0" for the 16 bytes at %rsi. Preserves registers.
put_q2:
    push %rax
    mov 8(%rsi), %rax
    call puthex64
    PUTS ":"
    mov (%rsi), %rax
    call puthex64
    pop %rax
    ret

# checksum: %rax = a rotate-xor-add sum of %ecx qwords at %rsi.
checksum:
    push %rcx
    push %rsi
    xor %eax, %eax
1:  rol $7, %rax
    xor (%rsi), %rax
    add $0x9e37, %rax
    add $8, %rsi
    dec %ecx
    jnz 1b
    pop %rsi
    pop %rcx
    ret

# fill_marker: fill the XS_SIZE bytes at %rdi with MARK. Preserves registers.
fill_marker:
    push %rax
    push %rcx
    push %rdi
    mov $MARK, %eax
    mov $XS_SIZE, %ecx
    rep stosb
    pop %rdi
    pop %rcx
    pop %rax
    ret

# count_changed: %eax += the number of bytes in [%ecx, %edx) of the area at %rsi that are not
# MARK. Preserves other registers.
count_changed:
    push %rcx
1:  cmp %edx, %ecx
    jae 2f
    cmpb $MARK, (%rsi,%rcx)
    je 3f
    inc %eax
3:  inc %ecx
    jmp 1b
2:  pop %rcx
    ret

# count_diff: %eax += the number of bytes in [%ecx, %edx) that differ between the areas at %rsi
# and %rdi. Preserves other registers.
count_diff:
    push %rcx
    push %rbx
1:  cmp %edx, %ecx
    jae 2f
    movb (%rsi,%rcx), %bl
    cmp (%rdi,%rcx), %bl
    je 3f
    inc %eax
3:  inc %ecx
    jmp 1b
2:  pop %rbx
    pop %rcx
    ret

# ---------------------------------------------------------------- ring-3 setup
# user_setup: TSS (rsp0), the timer gate handler, SYSCALL / SYSRET MSRs, the address spaces.
user_setup:
    TSS64_INIT
    lea timer_handler(%rip), %rax
    mov %rax, exc_handlers+0x20*8(%rip)
    SYSCALL_INIT
    call build_tables
    ret

# the frame pool, the address spaces and the tasks (run_tasks, task_init, resume_task,
# timer_handler, sys_texit); the timer stops switching after N_SWITCHES switches
RING3_TASKS N_SWITCHES

# ---------------------------------------------------------------- syscalls
syscall_entry:
    mov %rsp, sc_user_rsp(%rip)
    lea sc_stack_top(%rip), %rsp
    cmp $SYS_TEXIT, %eax
    je sys_texit
    PUTS "bad syscall\n"
    mov $4, %al
    call exit

# tasks_report: per-task results and the summary (timing-independent lines only).
tasks_report:
    lea tcbs(%rip), %rbx
    mov $'A', %r12d
    call task_report
    add $TCB_SIZE, %rbx
    mov $'B', %r12d
    call task_report
    mov tcbs+TCB_RESULT(%rip), %rax
    or tcbs+TCB_SIZE+TCB_RESULT(%rip), %rax
    PUTS "tasks: "
    push %rax
    mov switches(%rip), %rax
    call putdec64
    pop %rax
    PUTS " switches, "
    test %rax, %rax
    jnz 1f
    PUTS "ymm state intact\n"
    jmp 2f
1:  PUTS "errors A="
    mov tcbs+TCB_RESULT(%rip), %rax
    call puthex64
    PUTS " B="
    mov tcbs+TCB_SIZE+TCB_RESULT(%rip), %rax
    call puthex64
    call newline
2:  jmp kernel_ticks_report

.macro TASK_LINE what
    PUTS "task "
    mov %r12d, %eax
    call putc
    PUTS ": \what"
.endm
# task_report: %rbx = tcb, %r12d = letter.
task_report:
    mov TCB_RESULT(%rbx), %r13
    mov TCB_PRIV(%rbx), %r14
    TASK_LINE "started from the init image (ymm 0, mxcsr 1f80, fcw 37f, fsw 0) "
    test $ERR_INIT, %r13
    jnz 1f
    PUTS "ok\n"
    jmp 2f
1:  PUTS "BAD\n"
2:  TASK_LINE "ymm0-15 (256 bits), mxcsr, x87 "
    mov $~ERR_INIT, %rax
    test %rax, %r13
    jnz 1f
    PUTS "intact\n"
    jmp 2f
1:  PUTS "BAD, result="
    mov %r13, %rax
    call puthex64
    call newline
2:  TASK_LINE "private page "
    cmp PV_ID(%r14), %r12
    jne 1f
    cmpq $0, PV_COUNT(%r14)
    je 1f
    PUTS "has its id and a nonzero spin count\n"
    ret
1:  PUTS "BAD\n"
    ret

# ---------------------------------------------------------------- user side (ring 3)
.section .text.user, "ax"              # after user_text_start (ring3_64.inc)

# task_entry: task A or B; %rdi = 'A' or 'B'.
task_entry:
    mov $PRIV_VA, %esi
    mov %rdi, PV_ID(%rsi)
    # the state XRSTOR64 made from the kernel's init image
    xor %edx, %edx
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    vptest %ymm\n, %ymm\n
    jz 1f
    or $ERR_INIT, %edx
1:
    .endr
    stmxcsr PV_MXOUT(%rsi)
    cmpl $0x1f80, PV_MXOUT(%rsi)
    je 1f
    or $ERR_INIT, %edx
1:  fnstcw PV_FCWOUT(%rsi)
    cmpw $0x37f, PV_FCWOUT(%rsi)
    je 1f
    or $ERR_INIT, %edx
1:  fnstsw %ax
    test %ax, %ax
    jz 1f
    or $ERR_INIT, %edx
1:  mov %rdx, PV_ERR(%rsi)
    # ymm patterns and their complements from a per-task seed
    mov $0x9E3779B97F4A7C15, %rbx
    imul %rdi, %rbx
    mov %rbx, %rax
    xor %ecx, %ecx
1:  mov %rax, PV_PAT(%rsi,%rcx,8)
    not %rax
    mov %rax, PV_NPAT(%rsi,%rcx,8)
    not %rax
    rol $9, %rax
    add %rbx, %rax
    inc %ecx
    cmp $64, %ecx
    jb 1b
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    vpbroadcastq PV_PAT+32*\n(%rsi), %ymm\n
    vpinsrq $1, PV_PAT+32*\n+8(%rsi), %xmm\n, %xmm\n
    vinserti128 $1, PV_PAT+32*\n+16(%rsi), %ymm\n, %ymm\n
    .endr
    UTASK_FPU_INIT
task_spin:
    mov $PRIV_VA, %esi
    xor %edx, %edx
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    vptest PV_PAT+32*\n(%rsi), %ymm\n  # CF: pattern bits all set in ymm
    jnc 2f
    vptest PV_NPAT+32*\n(%rsi), %ymm\n # ZF: no bit outside the pattern
    jz 1f
2:  or $(1 << \n), %edx
1:
    .endr
    UTASK_FPU_CHECK or, %edx
    or %rdx, PV_ERR(%rsi)
    incq PV_COUNT(%rsi)
    mov $SHARED_VA, %eax
    cmpq $N_SWITCHES, SH_SWITCHES(%rax)
    jb task_spin
    mov PV_ERR(%rsi), %rdi
    mov $SYS_TEXIT, %eax
    syscall
    ud2

.section .data
.align 32
av: .quad 0x0123456789abcdef, 0xfedcba9876543210, 0x1111111122222222, 0x3333333344444444
bv: .quad 0x0f0f0f0f0f0f0f0f, 0x8000000000000001, 0xdeadbeefcafebabe, 0x7fffffffffffffff
y_p: .quad 0x1010101010101010, 0x2020202020202020, 0x3030303030303030, 0x4040404040404040
y_q: .quad 0xa1a1a1a1a1a1a1a1, 0xb2b2b2b2b2b2b2b2, 0xc3c3c3c3c3c3c3c3, 0xd4d4d4d4d4d4d4d4
dv: .double 1.5, 2.25, -3.0, 0.125
dw: .double 0.5, 4.0, 1.0, 8.0
mx_1f80: .long 0x1f80
mx_3f80: .long 0x3f80
fcw_027f: .word 0x027f

.section .bss
.align 64                              # XSAVE areas
xs_a: .skip XS_SIZE
xs_b: .skip XS_SIZE
xs_c: .skip XS_SIZE
img: .skip XS_SIZE
.align 32
ymm_out: .skip 32
abuf: .skip 64
results: .skip 10 * 32
fenv: .skip 32
mx_out: .skip 4
fcw_out: .skip 4
