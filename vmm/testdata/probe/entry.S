/*
 * Entry points of the probe guest.
 *  startup_64: Linux 64-bit boot protocol (paging on, identity map, RSI = boot_params).
 *  pvh_start:  PVH (32-bit protected mode, paging off, EBX = hvm_start_info).
 *  ap_tramp:   real-mode trampoline the application processors start in
 *              after INIT/SIPI; copied below 1 MiB by the probe.
 */
#define TRAMP 0x10000

	.section .note.Xen, "a"
	.balign 4
	.long 4		/* name size */
	.long 4		/* desc size */
	.long 18	/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_start

	.section .text.entry, "ax"
	.code64
	.globl startup_64
startup_64:
	cli
	lea stack_top(%rip), %rsp
	mov %rsi, %rsi		/* boot_params */
	xor %edi, %edi		/* 0 = Linux boot protocol */
	call probe_main
1:	cli
	hlt
	jmp 1b

	.code32
	.globl pvh_start
pvh_start:
	cli
	mov %ebx, %esi
	/* Identity-map 4 GiB with 2 MiB pages. */
	lea pvh_pml4, %edi
	lea pvh_pdpt, %eax
	or $3, %eax
	mov %eax, (%edi)
	lea pvh_pdpt, %edi
	lea pvh_pd, %eax
	or $3, %eax
	mov $4, %ecx
1:	mov %eax, (%edi)
	add $4096, %eax
	add $8, %edi
	loop 1b
	lea pvh_pd, %edi
	mov $0x83, %eax		/* present, writable, 2 MiB */
	xor %edx, %edx
	mov $2048, %ecx
2:	mov %eax, (%edi)
	mov %edx, 4(%edi)
	add $0x200000, %eax
	adc $0, %edx
	add $8, %edi
	loop 2b
	lea pvh_pml4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x20, %eax		/* PAE */
	mov %eax, %cr4
	mov $0xc0000080, %ecx	/* EFER */
	rdmsr
	or $0x100, %eax		/* LME */
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax	/* PG | PE */
	mov %eax, %cr0
	lgdt gdt_ptr
	ljmp $0x08, $pvh64

	.code64
pvh64:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	lea stack_top(%rip), %rsp
	mov $1, %edi		/* 1 = PVH */
	call probe_main
1:	cli
	hlt
	jmp 1b

/* Application processor trampoline, position-dependent at TRAMP. */
	.globl ap_tramp, ap_tramp_end, ap_cr3, ap_stack
	.code16
	.balign 16
ap_tramp:
	cli
	mov %cs, %ax
	mov %ax, %ds
	lgdtl (ap_gdt_ptr - ap_tramp)
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x08, $(TRAMP + ap32 - ap_tramp)
	.code32
ap32:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %ss
	mov %cr4, %eax
	or $0x20, %eax
	mov %eax, %cr4
	mov (TRAMP + ap_cr3 - ap_tramp), %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000000, %eax
	mov %eax, %cr0
	ljmp $0x18, $(TRAMP + ap64 - ap_tramp)
	.code64
ap64:
	mov (TRAMP + ap_stack - ap_tramp), %rsp
	movabs $ap_main, %rax
	call *%rax
1:	cli
	hlt
	jmp 1b
	.balign 8
ap_gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: 32-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
	.quad 0x00af9a000000ffff	/* 0x18: 64-bit code */
ap_gdt_ptr:
	.word ap_gdt_ptr - ap_gdt - 1
	.long TRAMP + ap_gdt - ap_tramp
ap_cr3:	.quad 0
ap_stack: .quad 0
ap_tramp_end:

	.data
	.balign 8
gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
gdt_ptr:
	.word gdt_ptr - gdt - 1
	.long gdt

	.bss
	.balign 4096
pvh_pml4: .skip 4096
pvh_pdpt: .skip 4096
pvh_pd:   .skip 4 * 4096
	.skip 16384
stack_top:
