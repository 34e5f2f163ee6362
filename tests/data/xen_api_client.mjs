// Drives the simulator with npm xen-api (the client Xen Orchestra uses): connect, load
// every object, see an event through barrier(), download a disk with getResource().
import { createClient } from 'xen-api'

const [url, vdiUuid] = process.argv.slice(2)
const xapi = createClient({ url, auth: { user: 'root', password: 'password' }, allowUnauthorized: false })
await xapi.connect()
await xapi.objectsFetched
const all = Object.values(xapi.objects.all)
const count = type => all.filter(o => o.$type === type).length
const vm = all.find(o => o.$type === 'VM' && !o.is_control_domain && !o.is_a_template && o.power_state === 'Halted')
await xapi.call('VM.set_name_label', vm.$ref, 'renamed-by-xen-api')
const updated = await xapi.barrier(vm.$ref)
const vdi = all.find(o => o.$type === 'VDI' && o.uuid === vdiUuid)
const response = await xapi.getResource('/export_raw_vdi/', { query: { format: 'raw', vdi: vdi.$ref } })
let bytes = 0
for await (const chunk of response.body) bytes += chunk.length
await response.task
console.log(JSON.stringify({ vms: count('VM'), vdis: count('VDI'), hosts: count('host'), renamed: updated.name_label, bytes }))
await xapi.disconnect()
process.exit(0)
