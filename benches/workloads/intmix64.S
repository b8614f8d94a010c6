# Kernel-style integer workload for the translator benchmark: loads, ALU, shifts, a multiply,
# stores, compare-and-branch, call/ret. System V calling convention so the host can run the same
# bytes natively: intmix(rdi = 4 KiB buffer, rsi = outer iterations) -> rax.
.intel_syntax noprefix
.text
.globl intmix
intmix:
    push rbx
    push r12
    mov r12, rsi
    xor eax, eax
outer:
    mov rsi, rdi
    mov edx, 512
inner:
    mov r8, [rsi]
    add rax, r8
    mov r9, rax
    shl r9, 7
    shr rax, 3
    xor rax, r9
    xor rax, rdx
    lea rcx, [rax + rdx*4 + 17]
    and rcx, 0xff
    cmp rcx, 0x80
    jb 1f
    add rax, rcx
1:  mov [rsi], rax
    add rsi, 8
    dec edx
    jnz inner
    call leaf
    imul rax, rax, 31
    dec r12
    jnz outer
    pop r12
    pop rbx
    ret
leaf:
    push rbx
    mov rbx, rax
    shr rbx, 11
    add rax, rbx
    pop rbx
    ret
