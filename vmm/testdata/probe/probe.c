/*
 * probe: a small freestanding x86-64 guest that exercises a VMM the way a
 * kernel does and prints what it sees on the 8250, for the host to check.
 *
 * Lines it prints (all start with "probe: "):
 *   start boot=linux|pvh
 *   cmdline <text>
 *   e820 <addr> <size> <type>        one per entry (hex)
 *   ram <bytes>                      sum of usable RAM (decimal)
 *   acpi cpus=<n>                    enabled local APICs in the MADT (or "acpi none")
 *   pit ticks=<n>
 *   lapic timer ok
 *   disk <i> base=<hex> irq=<n> sectors=<n> fnv=<16 hex>
 *   disk <i> write ok
 *   cpus=<n>
 *   all done
 * Modes (probe.mode= on the command line): normal, panic, hang, baddesc, triple,
 * int3 (a breakpoint before the rest).
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u32 rd32(u64 a) { return *(volatile u32 *)a; }
static inline void wr32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void barrier(void) { __asm__ volatile("mfence" ::: "memory"); }

/* ---- console ---- */
static void putc_(char c)
{
	if (c == '\n')
		putc_('\r');
	while (!(inb(0x3fd) & 0x20))
		;
	outb(0x3f8, c);
}
static void puts_(const char *s) { while (*s) putc_(*s++); }
static void puthex(u64 v, int digits)
{
	for (int i = digits - 1; i >= 0; i--)
		putc_("0123456789abcdef"[(v >> (4 * i)) & 15]);
}
static void putx(u64 v)
{
	int d = 1;
	while (d < 16 && (v >> (4 * d)))
		d++;
	puts_("0x");
	puthex(v, d);
}
static void putd(u64 v)
{
	char b[24];
	int i = 0;
	do { b[i++] = '0' + v % 10; v /= 10; } while (v);
	while (i) putc_(b[--i]);
}

static void halt_forever(void) { for (;;) __asm__ volatile("cli; hlt"); }

/* ---- strings ---- */
static int startswith(const char *s, const char *p) { while (*p) if (*s++ != *p++) return 0; return 1; }
static u64 parse_num(const char **sp)
{
	const char *s = *sp;
	u64 v = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		for (;;) {
			char c = *s;
			int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
			if (d < 0) break;
			v = v * 16 + d; s++;
		}
	} else {
		while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
	}
	if (*s == 'K' || *s == 'k') { v <<= 10; s++; }
	else if (*s == 'M' || *s == 'm') { v <<= 20; s++; }
	*sp = s;
	return v;
}

/* ---- interrupts ---- */
struct idt_entry { u16 off0, sel, flags, off1; u32 off2, zero; } __attribute__((packed));
static struct idt_entry idt[256] __attribute__((aligned(16)));
struct interrupt_frame;
#define LAPIC 0xfee00000UL
#define IOAPIC 0xfec00000UL

static volatile u64 pit_ticks, lapic_ticks, disk_irqs, spurious;
static volatile u32 ap_count;

static void eoi(void) { wr32(LAPIC + 0xb0, 0); }

__attribute__((interrupt)) static void isr_pit(struct interrupt_frame *f) { (void)f; pit_ticks++; eoi(); }
__attribute__((interrupt)) static void isr_lapic(struct interrupt_frame *f) { (void)f; lapic_ticks++; eoi(); }
__attribute__((interrupt)) static void isr_spurious(struct interrupt_frame *f) { (void)f; spurious++; }

static u64 vio_base[8];
static int vio_count;
__attribute__((interrupt)) static void isr_virtio(struct interrupt_frame *f)
{
	(void)f;
	for (int i = 0; i < vio_count; i++) {
		u32 st = rd32(vio_base[i] + 0x60);
		if (st)
			wr32(vio_base[i] + 0x64, st);
	}
	disk_irqs++;
	eoi();
}
static volatile int int3_seen;
__attribute__((interrupt)) static void isr_int3(struct interrupt_frame *f) { (void)f; int3_seen = 1; }

__attribute__((interrupt)) static void isr_fault(struct interrupt_frame *f, u64 code)
{
	(void)f; (void)code;
	puts_("probe: unexpected exception\n");
	halt_forever();
}

static u16 code_selector(void) { u16 cs; __asm__ volatile("mov %%cs, %0" : "=r"(cs)); return cs; }

static void set_gate(int v, void *h)
{
	u64 a = (u64)h;
	idt[v].off0 = a;
	idt[v].sel = code_selector();
	idt[v].flags = 0x8e00;
	idt[v].off1 = a >> 16;
	idt[v].off2 = a >> 32;
	idt[v].zero = 0;
}

static void load_idt(void *base, u16 limit)
{
	struct { u16 limit; u64 base; } __attribute__((packed)) p = { limit, (u64)base };
	__asm__ volatile("lidt %0" ::"m"(p));
}

static void ioapic_route(int pin, int vector)
{
	wr32(IOAPIC, 0x10 + 2 * pin + 1);
	wr32(IOAPIC + 0x10, 0);		/* destination APIC 0 */
	wr32(IOAPIC, 0x10 + 2 * pin);
	wr32(IOAPIC + 0x10, vector);	/* fixed, physical, edge, active high, unmasked */
}

static void wait_irq(volatile u64 *counter, u64 target, u64 max_ticks_unused)
{
	(void)max_ticks_unused;
	while (*counter < target)
		__asm__ volatile("sti; hlt; cli");
}

/* ---- virtio-mmio block ---- */
#define QN 8
struct vdesc { u64 addr; u32 len; u16 flags, next; };
struct vq {
	struct vdesc desc[QN];
	struct { u16 flags, idx, ring[QN], event; } avail __attribute__((aligned(2)));
	struct { u16 flags, idx; struct { u32 id, len; } ring[QN]; u16 event; } used __attribute__((aligned(4096)));
} __attribute__((aligned(4096)));
static struct vq vqs[8];
static struct { u32 type, reserved; u64 sector; } req_hdr __attribute__((aligned(16)));
static volatile u8 req_status;
static u8 sector_buf[4096] __attribute__((aligned(4096)));

static int blk_request(int d, u32 type, u64 sector, u8 *buf, u32 len, int bad)
{
	struct vq *q = &vqs[d];
	u64 base = vio_base[d];
	req_hdr.type = type;
	req_hdr.sector = sector;
	req_status = 0xff;
	q->desc[0] = (struct vdesc){ (u64)&req_hdr, 16, 1, 1 };
	q->desc[1] = (struct vdesc){ (u64)buf, len, (u16)(1 | (type == 0 ? 2 : 0)), 2 };
	q->desc[2] = (struct vdesc){ (u64)&req_status, 1, 2, 0 };
	if (bad)
		q->desc[2] = (struct vdesc){ (u64)&req_status, 1, 3, 1 };	/* loops back to 1 */
	u16 used0 = q->used.idx;
	q->avail.ring[q->avail.idx % QN] = 0;
	barrier();
	q->avail.idx++;
	barrier();
	u64 irqs0 = disk_irqs;
	wr32(base + 0x50, 0);
	while (*(volatile u16 *)&q->used.idx == used0)
		__asm__ volatile("sti; hlt; cli");
	(void)irqs0;
	return req_status;
}

static void fnv(u64 *h, const u8 *p, u32 n)
{
	for (u32 i = 0; i < n; i++) {
		*h ^= p[i];
		*h *= 0x100000001b3UL;
	}
}

static void virtio_disk(int d, u64 base, int irq, int bad)
{
	vio_base[d] = base;
	if (rd32(base) != 0x74726976 || rd32(base + 4) != 2 || rd32(base + 8) != 2) {
		puts_("probe: disk "); putd(d); puts_(" not a virtio-mmio v2 block device\n");
		return;
	}
	wr32(base + 0x70, 0);
	wr32(base + 0x70, 1 | 2);
	wr32(base + 0x14, 1);
	u32 f1 = rd32(base + 0x10);
	if (!(f1 & 1)) { puts_("probe: disk lacks VERSION_1\n"); return; }
	wr32(base + 0x24, 0); wr32(base + 0x20, 0);
	wr32(base + 0x24, 1); wr32(base + 0x20, 1);
	wr32(base + 0x70, 1 | 2 | 8);
	if (!(rd32(base + 0x70) & 8)) { puts_("probe: FEATURES_OK refused\n"); return; }
	wr32(base + 0x30, 0);
	if (rd32(base + 0x34) < QN) { puts_("probe: queue too small\n"); return; }
	struct vq *q = &vqs[d];
	wr32(base + 0x38, QN);
	wr32(base + 0x80, (u64)q->desc); wr32(base + 0x84, (u64)q->desc >> 32);
	wr32(base + 0x90, (u64)&q->avail); wr32(base + 0x94, (u64)&q->avail >> 32);
	wr32(base + 0xa0, (u64)&q->used); wr32(base + 0xa4, (u64)&q->used >> 32);
	wr32(base + 0x44, 1);
	wr32(base + 0x70, 1 | 2 | 4 | 8);
	u64 sectors = rd32(base + 0x100) | (u64)rd32(base + 0x104) << 32;
	ioapic_route(irq, 0x40);

	if (bad) {
		puts_("probe: submitting a looping descriptor chain\n");
		blk_request(d, 0, 0, sector_buf, 512, 1);
		puts_("probe: device accepted a looping chain\n");
		return;
	}
	u64 h = 0xcbf29ce484222325UL;
	for (u64 s = 0; s < sectors; s += 8) {
		u32 n = sectors - s < 8 ? (sectors - s) * 512 : 4096;
		if (blk_request(d, 0, s, sector_buf, n, 0) != 0) {
			puts_("probe: read error at sector "); putd(s); putc_('\n');
			return;
		}
		fnv(&h, sector_buf, n);
	}
	puts_("probe: disk "); putd(d); puts_(" base="); putx(base); puts_(" irq="); putd(irq);
	puts_(" sectors="); putd(sectors); puts_(" fnv="); puthex(h, 16); putc_('\n');
	if (sectors < 2)
		return;
	/* Write sector 1 and read it back. */
	for (int i = 0; i < 512; i++)
		sector_buf[i] = "probe-write-"[i % 12];
	int st = blk_request(d, 1, 1, sector_buf, 512, 0);
	for (int i = 0; i < 512; i++)
		sector_buf[i] = 0;
	int st2 = blk_request(d, 0, 1, sector_buf, 512, 0);
	int same = 1;
	for (int i = 0; i < 512; i++)
		if (sector_buf[i] != (u8)"probe-write-"[i % 12])
			same = 0;
	puts_("probe: disk "); putd(d);
	puts_(st == 0 && st2 == 0 && same ? " write ok\n" : " write failed\n");
}

/* ---- SMP ---- */
extern char ap_tramp[], ap_tramp_end[], ap_cr3[], ap_stack[];
static u8 ap_stacks[8][4096] __attribute__((aligned(16)));
static volatile u32 ap_next;

void ap_main(void)
{
	__atomic_fetch_add(&ap_count, 1, __ATOMIC_SEQ_CST);
	halt_forever();
}

static void start_aps(void)
{
	u8 *t = (u8 *)0x10000;
	u64 n = ap_tramp_end - ap_tramp;
	for (u64 i = 0; i < n; i++)
		t[i] = ap_tramp[i];
	u64 cr3;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	*(u64 *)(t + (ap_cr3 - ap_tramp)) = cr3;
	/* All APs share one stack slot in turn is not safe; give them the top of a
	 * shared area each: they only push a return address and halt. */
	*(u64 *)(t + (ap_stack - ap_tramp)) = (u64)&ap_stacks[7][4096];
	barrier();
	/* INIT, then two SIPIs, to all but self. */
	wr32(LAPIC + 0x310, 0);
	wr32(LAPIC + 0x300, 0x000c4500);
	u64 t0 = pit_ticks;
	wait_irq(&pit_ticks, t0 + 10, 0);
	wr32(LAPIC + 0x300, 0x000c4600 | (0x10000 >> 12));
	t0 = pit_ticks;
	wait_irq(&pit_ticks, t0 + 2, 0);
	wr32(LAPIC + 0x300, 0x000c4600 | (0x10000 >> 12));
	t0 = pit_ticks;
	wait_irq(&pit_ticks, t0 + 100, 0);
	puts_("probe: cpus="); putd(1 + ap_count); putc_('\n');
}

/* ---- boot information ---- */
struct e820 { u64 addr, size; u32 type; } __attribute__((packed));
struct pvh_mem { u64 addr, size; u32 type, reserved; };

static const char *cmdline = "";

static void boot_info(int pvh, u64 info)
{
	u64 ram = 0;
	puts_(pvh ? "probe: start boot=pvh\n" : "probe: start boot=linux\n");
	if (!pvh) {
		u8 *bp = (u8 *)info;
		u64 cl = *(u32 *)(bp + 0x228) | (u64) * (u32 *)(bp + 0xc8) << 32;
		if (cl)
			cmdline = (const char *)cl;
		u8 n = bp[0x1e8];
		struct e820 *e = (struct e820 *)(bp + 0x2d0);
		puts_("probe: cmdline "); puts_(cmdline); putc_('\n');
		for (int i = 0; i < n && i < 128; i++) {
			puts_("probe: e820 "); putx(e[i].addr); putc_(' '); putx(e[i].size); putc_(' '); putd(e[i].type); putc_('\n');
			if (e[i].type == 1) ram += e[i].size;
		}
	} else {
		u8 *si = (u8 *)info;
		if (*(u32 *)si != 0x336ec578) { puts_("probe: bad hvm_start_info magic\n"); halt_forever(); }
		u64 cl = *(u64 *)(si + 24);
		if (cl)
			cmdline = (const char *)cl;
		puts_("probe: cmdline "); puts_(cmdline); putc_('\n');
		if (*(u32 *)(si + 4) >= 1) {
			struct pvh_mem *m = (struct pvh_mem *)*(u64 *)(si + 40);
			u32 n = *(u32 *)(si + 48);
			for (u32 i = 0; i < n && i < 128; i++) {
				puts_("probe: e820 "); putx(m[i].addr); putc_(' '); putx(m[i].size); putc_(' '); putd(m[i].type); putc_('\n');
				if (m[i].type == 1) ram += m[i].size;
			}
		}
	}
	puts_("probe: ram "); putd(ram); putc_('\n');
}

/* Count the enabled local APICs the firmware's MADT announces. */
static int sum8(const u8 *p, u32 n) { u8 s = 0; for (u32 i = 0; i < n; i++) s += p[i]; return s; }
static void acpi_cpus(u64 rsdp)
{
	const u8 *r = (const u8 *)rsdp;
	if (!rsdp || !startswith((const char *)r, "RSD PTR ") || sum8(r, 20)) {
		puts_("probe: acpi none\n");
		return;
	}
	u64 root = r[15] >= 2 ? *(u64 *)(r + 24) : *(u32 *)(r + 16);
	int wide = r[15] >= 2;
	const u8 *x = (const u8 *)root;
	u32 len = *(u32 *)(x + 4);
	if (sum8(x, len)) { puts_("probe: acpi bad root checksum\n"); return; }
	int n = (len - 36) / (wide ? 8 : 4);
	for (int i = 0; i < n; i++) {
		const u8 *t = (const u8 *)(wide ? *(u64 *)(x + 36 + 8 * i) : *(u32 *)(x + 36 + 4 * i));
		if (!startswith((const char *)t, "APIC"))
			continue;
		u32 tl = *(u32 *)(t + 4);
		if (sum8(t, tl)) { puts_("probe: acpi bad MADT checksum\n"); return; }
		int cpus = 0;
		for (u32 o = 44; o + 2 <= tl && t[o + 1] >= 2; o += t[o + 1])
			if (t[o] == 0 && (*(u32 *)(t + o + 4) & 1))
				cpus++;
		puts_("probe: acpi cpus="); putd(cpus); putc_('\n');
		return;
	}
	puts_("probe: acpi no MADT\n");
}

static const char *mode(void)
{
	for (const char *s = cmdline; *s; s++)
		if ((s == cmdline || s[-1] == ' ') && startswith(s, "probe.mode="))
			return s + 11;
	return "normal";
}

void probe_main(int pvh, u64 info)
{
	boot_info(pvh, info);
	acpi_cpus(pvh ? *(u64 *)((u8 *)info + 32) : *(u64 *)((u8 *)info + 0x70));
	const char *m = mode();
	if (startswith(m, "panic")) {
		puts_("Kernel panic - not syncing: probe\n");
		halt_forever();
	}
	if (startswith(m, "triple")) {
		puts_("probe: triple fault\n");
		load_idt(0, 0);
		__asm__ volatile("ud2");
	}

	for (int v = 0; v < 32; v++)
		set_gate(v, isr_fault);
	set_gate(3, isr_int3);
	set_gate(0x20, isr_pit);
	set_gate(0x30, isr_lapic);
	set_gate(0x40, isr_virtio);
	set_gate(0xff, isr_spurious);
	load_idt(idt, sizeof(idt) - 1);
	if (startswith(m, "int3")) {
		/* A breakpoint through a valid IDT: delivered on hardware, beyond
		 * the instruction emulator of a PVM host. */
		__asm__ volatile("int3");
		puts_(int3_seen ? "probe: int3 ok\n" : "probe: int3 lost\n");
	}
	/* Mask the 8259s; everything goes through the IOAPIC. */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	wr32(LAPIC + 0xf0, 0x1ff);	/* enable, spurious vector 0xff */
	ioapic_route(0, 0x20);
	ioapic_route(2, 0x20);
	/* PIT channel 0, rate generator, 1 kHz. */
	outb(0x43, 0x34);
	outb(0x40, 1193 & 0xff);
	outb(0x40, 1193 >> 8);
	wait_irq(&pit_ticks, 3, 0);
	puts_("probe: pit ticks="); putd(pit_ticks >= 3 ? 3 : pit_ticks); putc_('\n');
	/* LAPIC timer, one shot. */
	wr32(LAPIC + 0x3e0, 0x3);	/* divide by 16 */
	wr32(LAPIC + 0x320, 0x30);
	wr32(LAPIC + 0x380, 10000);
	wait_irq(&lapic_ticks, 1, 0);
	puts_("probe: lapic timer ok\n");

	if (startswith(m, "hang")) {
		puts_("probe: hanging\n");
		halt_forever();
	}

	/* virtio_mmio.device=<size>@<base>:<irq> words. */
	int bad = startswith(m, "baddesc");
	for (const char *s = cmdline; *s; s++) {
		if ((s == cmdline || s[-1] == ' ') && startswith(s, "virtio_mmio.device=") && vio_count < 8) {
			const char *p = s + 19;
			parse_num(&p);
			if (*p++ != '@') continue;
			u64 base = parse_num(&p);
			if (*p++ != ':') continue;
			u64 irq = parse_num(&p);
			int d = vio_count++;
			virtio_disk(d, base, irq, bad);
		}
	}

	start_aps();
	puts_("probe: all done\n");
	/* Reset through the keyboard controller; if that does nothing, triple fault. */
	outb(0x64, 0xfe);
	for (volatile int i = 0; i < 100000; i++)
		;
	load_idt(0, 0);
	__asm__ volatile("ud2");
}
