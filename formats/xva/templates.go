package xva

import (
	"crypto/rand"
	"fmt"
)

// Record templates for VMs that did not come from an XVA. They carry the
// field set of Xen Orchestra's writer (@xen-orchestra/xva 1.0.3), whose
// exports xapi on XCP-ng 8.2/8.3 imports; xapi fills fields added after
// that from its own defaults.

func st(kv ...any) Value {
	v := Value{Kind: Struct}
	for i := 0; i+1 < len(kv); i += 2 {
		var val Value
		switch t := kv[i+1].(type) {
		case string:
			val = Str(t)
		case bool:
			val = BoolValue(t)
		case Value:
			val = t
		default:
			panic(fmt.Sprintf("template value %T", t))
		}
		v.Members = append(v.Members, Member{Name: kv[i].(string), Value: val})
	}
	return v
}

func arr(items ...string) Value {
	v := Value{Kind: Array, Items: []Value{}}
	for _, s := range items {
		v.Items = append(v.Items, Str(s))
	}
	return v
}

func defaultVersion() Value {
	return st(
		"hostname", "vmconv",
		"date", "2025-01-01",
		"product_version", "8.2.1",
		"product_brand", "XCP-ng",
		"build_number", "vmconv",
		// API 1.20 as Xen Orchestra claims: below every supported host's
		// own version, so the importer's compatibility check passes.
		"xapi_major", "1",
		"xapi_minor", "20",
		"export_vsn", "2",
	)
}

func defaultVM() Value {
	return st(
		"actions_after_crash", "restart",
		"actions_after_reboot", "restart",
		"actions_after_shutdown", "destroy",
		"affinity", NullRef,
		"allowed_operations", arr(),
		"blobs", st(),
		"blocked_operations", st(),
		"children", arr(),
		"consoles", arr(),
		"crash_dumps", arr(),
		"current_operations", st(),
		"domain_type", "hvm",
		"domarch", "",
		"domid", "-1",
		"generation_id", "",
		"guest_metrics", NullRef,
		"ha_always_run", false,
		"ha_restart_priority", "",
		"hardware_platform_version", "0",
		"has_vendor_device", false,
		"HVM_boot_params", st("order", "cdn"),
		"HVM_boot_policy", "BIOS order",
		"HVM_shadow_multiplier", Value{Kind: Double, Text: "1"},
		"is_a_template", false,
		"is_a_snapshot", false,
		"is_control_domain", false,
		"is_default_template", false,
		"is_snapshot_from_vmpp", false,
		"is_vmss_snapshot", false,
		"last_booted_record", "",
		"last_boot_CPU_flags", st(),
		"memory_overhead", "11534336",
		"memory_target", "0",
		"metrics", NullRef,
		"name_description", "",
		"NVRAM", st(),
		"order", "0",
		"other_config", st("mac_seed", newUUID(), "base_template_name", "Other install media", "install-methods", "cdrom"),
		"parent", NullRef,
		"PCI_bus", "",
		"platform", st("timeoffset", "0", "device-model", "qemu-upstream-compat", "secureboot", "false",
			"hpet", "true", "nx", "true", "pae", "true", "apic", "true", "viridian", "false", "acpi", "1"),
		"power_state", "Halted",
		"PV_bootloader", "",
		"PV_bootloader_args", "",
		"PV_legacy_args", "",
		"recommendations", "",
		"reference_label", "other-install-media",
		"requires_reboot", false,
		"resident_on", NullRef,
		"shutdown_delay", "0",
		"snapshot_info", st(),
		"snapshot_metadata", "",
		"snapshot_of", NullRef,
		"snapshot_time", Value{Kind: DateTime, Text: "19700101T00:00:00Z"},
		"snapshots", arr(),
		"start_delay", "0",
		"suspend_SR", NullRef,
		"suspend_VDI", NullRef,
		"tags", arr(),
		"transportable_snapshot_id", "",
		"user_version", "1",
		"VCPUs_params", st(),
		"version", "0",
		"VGPUs", arr(),
		"VTPMs", arr(),
		"VUSBs", arr(),
		"xenstore_data", st(),
	)
}

func defaultSR() Value {
	// Xen Orchestra passes the target SR's own record here; this is the
	// full field set such a record has.
	return st(
		"uuid", newUUID(),
		"name_label", "Local storage",
		"name_description", "",
		"allowed_operations", arr(),
		"current_operations", st(),
		"PBDs", arr(),
		"virtual_allocation", "0",
		"physical_utilisation", "0",
		"physical_size", "0",
		"type", "ext",
		"content_type", "user",
		"shared", false,
		"other_config", st(),
		"tags", arr(),
		"sm_config", st(),
		"blobs", st(),
		"local_cache_enabled", false,
		"introduced_by", NullRef,
		"clustered", false,
		"is_tools_sr", false,
	)
}

func defaultVDI(name string) Value {
	return st(
		"allowed_operations", arr(),
		"current_operations", st(),
		"crash_dumps", arr(),
		"location", "",
		"is_tools_iso", false,
		"metadata_of_pool", NullRef,
		"metadata_latest", false,
		"snapshot_time", Value{Kind: DateTime, Text: "19700101T00:00:00Z"},
		"allow_caching", false,
		"cbt_enabled", false,
		"is_a_snapshot", false,
		"managed", true,
		"metrics", NullRef,
		"missing", false,
		"name_description", "",
		"name_label", name,
		"on_boot", "persist",
		"other_config", st(),
		"parent", NullRef,
		"physical_utilisation", "0",
		"read_only", false,
		"sharable", false,
		"sm_config", st(),
		"snapshot_of", NullRef,
		"snapshots", arr(),
		"storage_lock", false,
		"tags", arr(),
		"type", "user",
		"uuid", newUUID(),
		"xenstore_data", st(),
	)
}

func defaultVBD() Value {
	return st(
		"allowed_operations", arr(),
		"current_operations", st(),
		"currently_attached", false,
		"metrics", NullRef,
		"other_config", st(),
		"qos_algorithm_params", st(),
		"qos_algorithm_type", "",
		"qos_supported_algorithms", arr(),
		"runtime_properties", st(),
		"status_code", "0",
		"status_detail", "",
		"storage_lock", false,
		"unpluggable", false,
		"uuid", newUUID(),
	)
}

func defaultVIF() Value {
	return st(
		"allowed_operations", arr(),
		"currently_attached", false,
		"current_operations", st(),
		"ipv4_addresses", arr(),
		"ipv4_allowed", arr(),
		"ipv4_configuration_mode", "None",
		"ipv4_gateway", "",
		"ipv6_addresses", arr(),
		"ipv6_allowed", arr(),
		"ipv6_configuration_mode", "None",
		"ipv6_gateway", "",
		"locking_mode", "network_default",
		"MAC_autogenerated", false,
		"MTU", "1500",
		"metrics", NullRef,
		"other_config", st(),
		"qos_algorithm_params", st(),
		"qos_algorithm_type", "",
		"qos_supported_algorithms", arr(),
		"runtime_properties", st(),
		"status_code", "0",
		"status_detail", "",
		"uuid", newUUID(),
	)
}

func defaultNetwork(name string) Value {
	// xapi maps a network by name_label (then bridge) to one of the pool's,
	// and creates it from this record when none matches.
	return st(
		"uuid", newUUID(),
		"name_label", name,
		"name_description", "",
		"allowed_operations", arr(),
		"current_operations", st(),
		"PIFs", arr(),
		"MTU", "1500",
		"other_config", st(),
		"bridge", "",
		"managed", true,
		"blobs", st(),
		"tags", arr(),
		"default_locking_mode", "unlocked",
		"assigned_ips", st(),
		"purpose", arr(),
	)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
