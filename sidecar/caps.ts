/** Linux capability numbers and names (capability.h), for reading CapEff/CapBnd and the exec helper's bounding mask. */
const CAP_NAMES = [
  'chown',
  'dac_override',
  'dac_read_search',
  'fowner',
  'fsetid',
  'kill',
  'setgid',
  'setuid',
  'setpcap',
  'linux_immutable',
  'net_bind_service',
  'net_broadcast',
  'net_admin',
  'net_raw',
  'ipc_lock',
  'ipc_owner',
  'sys_module',
  'sys_rawio',
  'sys_chroot',
  'sys_ptrace',
  'sys_pacct',
  'sys_admin',
  'sys_boot',
  'sys_nice',
  'sys_resource',
  'sys_time',
  'sys_tty_config',
  'mknod',
  'lease',
  'audit_write',
  'audit_control',
  'setfcap',
  'mac_override',
  'mac_admin',
  'syslog',
  'wake_alarm',
  'block_suspend',
  'audit_read',
  'perfmon',
  'bpf',
  'checkpoint_restore',
] as const;
export type CapName = (typeof CAP_NAMES)[number];

export function capBit(name: CapName): bigint {
  return 1n << BigInt(CAP_NAMES.indexOf(name));
}

export function capMask(names: readonly CapName[]): bigint {
  return names.reduce((m, n) => m | capBit(n), 0n);
}

/** Names of the set bits we know, lowest first. */
export function capNames(mask: bigint): CapName[] {
  return CAP_NAMES.filter((_, i) => (mask >> BigInt(i)) & 1n);
}
