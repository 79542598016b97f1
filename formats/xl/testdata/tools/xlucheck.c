/*
 * xlucheck: read an xl.cfg with Xen's own parser (libxlutil, the code
 * `xl create` uses) and print what it understood, one "key value" line
 * each, so tests compare it with what vmconv read or wrote.
 *
 *   cc -o xlucheck xlucheck.c -lxlutil -lxenlight
 *   xlucheck FILE
 *
 * Lines: "name N", "type T", "builder B", "memory M", "maxmem M",
 * "vcpus N", "maxvcpus N", "kernel K", "ramdisk R", "cmdline C",
 * "bootloader B", then per disk "disk VDEV FORMAT cdrom=0|1 rw=0|1 TARGET"
 * and per vif "vif SPEC". Exit status 1 and a message when libxlutil
 * refuses the file or a disk spec.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxl.h>
#include <libxlutil.h>

static void str(XLU_Config *c, const char *k)
{
	const char *v;
	if (!xlu_cfg_get_string(c, k, &v, 0))
		printf("%s %s\n", k, v);
}

static void num(XLU_Config *c, const char *k)
{
	long v;
	if (!xlu_cfg_get_long(c, k, &v, 0))
		printf("%s %ld\n", k, v);
}

int main(int argc, char **argv)
{
	XLU_Config *c;
	XLU_ConfigList *l;
	int n, i;

	if (argc != 2) {
		fprintf(stderr, "usage: xlucheck FILE\n");
		return 2;
	}
	c = xlu_cfg_init(stderr, argv[1]);
	if (!c || xlu_cfg_readfile(c, argv[1])) {
		fprintf(stderr, "xlucheck: %s: libxlutil refuses the file\n", argv[1]);
		return 1;
	}
	str(c, "name"); str(c, "type"); str(c, "builder"); str(c, "bios"); str(c, "firmware");
	num(c, "memory"); num(c, "maxmem"); num(c, "vcpus"); num(c, "maxvcpus");
	str(c, "kernel"); str(c, "ramdisk"); str(c, "cmdline"); str(c, "root"); str(c, "extra");
	str(c, "bootloader"); str(c, "uuid");
	if (!xlu_cfg_get_list(c, "disk", &l, &n, 0)) {
		for (i = 0; i < n; i++) {
			const char *spec = xlu_cfg_get_listitem(l, i);
			libxl_device_disk d;
			libxl_device_disk_init(&d);
			if (!spec || xlu_disk_parse(c, 1, &spec, &d)) {
				fprintf(stderr, "xlucheck: %s: disk %d: libxlutil refuses %s\n", argv[1], i, spec ? spec : "(not a string)");
				return 1;
			}
			printf("disk %s %s cdrom=%d rw=%d %s\n", d.vdev, libxl_disk_format_to_string(d.format),
			       d.is_cdrom, d.readwrite, d.pdev_path ? d.pdev_path : "");
			libxl_device_disk_dispose(&d);
		}
	}
	if (!xlu_cfg_get_list(c, "vif", &l, &n, 0))
		for (i = 0; i < n; i++)
			printf("vif %s\n", xlu_cfg_get_listitem(l, i));
	xlu_cfg_destroy(c);
	return 0;
}
