-- Wireshark dissector for the Holdfast cluster control protocol, version 1
-- (implementation/proto/PROTOCOL.md): every message type and field, named holdfast.*.
--
--   wireshark -X lua_script:pcaps/wireshark/holdfast.lua pcaps/out/RUN/sw0.pcapng
--   tshark -X lua_script:pcaps/wireshark/holdfast.lua -r FILE -Y holdfast -O holdfast -V
--
-- or copy it into Wireshark's personal plugins folder (Help > About > Folders). UDP port 5405;
-- "Decode As..." moves it elsewhere. The HMAC tag is shown, not checked (no key here).

local p = Proto("holdfast", "Holdfast control protocol")

local TYPES = {
  [1] = "ANNOUNCE", [2] = "SOLICIT", [3] = "HEARTBEAT", [4] = "ASSUME-REQUEST",
  [5] = "ASSUME-GRANT", [6] = "ASSUME-DENY", [7] = "TAKEOVER-NOTICE", [8] = "HANDBACK",
  [9] = "RECLAIM", [10] = "CONN-STATE", [11] = "FETCH", [12] = "FETCHED", [13] = "ALIVE",
}
local FAILBACK = { [0] = "none", [1] = "new-connections", [2] = "migrate" }
local SNOOP = { [0] = "none", [1] = "mirror", [2] = "forward" }
local ASSIGNMENT = { [0] = "ordered", [1] = "spread" }
local ARP = { [0] = "none", [1] = "garp", [2] = "vmac" }
local REASON = { [0] = "granted", [1] = "the replier (or another) assumes",
  [2] = "the holder is alive", [3] = "share mismatch" }
local SCOPE = { [0] = "all", [1] = "share", [2] = "connections" }
local BOOL = { [0] = "false", [1] = "true" }

local f = {
  magic = ProtoField.uint32("holdfast.magic", "Magic", base.HEX),
  version = ProtoField.uint8("holdfast.version", "Version"),
  type = ProtoField.uint8("holdfast.type", "Type", base.DEC, TYPES),
  flags = ProtoField.uint16("holdfast.flags", "Flags", base.HEX),
  eligible = ProtoField.bool("holdfast.flags.eligible", "Eligible", 16, nil, 0x0001),
  leaving = ProtoField.bool("holdfast.flags.leaving", "Leaving", 16, nil, 0x0002),
  cluster = ProtoField.uint32("holdfast.cluster", "Cluster id"),
  sender = ProtoField.uint32("holdfast.sender", "Sender node"),
  boot_epoch = ProtoField.uint32("holdfast.boot_epoch", "Boot epoch"),
  seq = ProtoField.uint64("holdfast.seq", "Sequence"),
  length = ProtoField.uint32("holdfast.length", "Body length"),
  tag = ProtoField.bytes("holdfast.tag", "HMAC-SHA256 tag"),
  -- ownership record
  ownership = ProtoField.none("holdfast.ownership", "Ownership record"),
  node_id = ProtoField.uint32("holdfast.node_id", "Node id"),
  failback = ProtoField.uint8("holdfast.failback", "Failback", base.DEC, FAILBACK),
  snoop = ProtoField.uint8("holdfast.snoop", "Snoop", base.DEC, SNOOP),
  assignment = ProtoField.uint8("holdfast.assignment", "Assignment", base.DEC, ASSIGNMENT),
  miss_count = ProtoField.uint8("holdfast.miss_count", "Miss count"),
  heartbeat_ms = ProtoField.uint32("holdfast.heartbeat_ms", "Heartbeat interval (ms)"),
  backup = ProtoField.uint32("holdfast.backup", "Backup"),
  arp = ProtoField.uint8("holdfast.arp", "ARP policy", base.DEC, ARP),
  protocol = ProtoField.uint8("holdfast.protocol", "Protocol"),
  port_first = ProtoField.uint16("holdfast.port_first", "First port"),
  port_last = ProtoField.uint16("holdfast.port_last", "Last port"),
  application = ProtoField.string("holdfast.application", "Application"),
  address = ProtoField.none("holdfast.address", "Owned address"),
  ipv4 = ProtoField.ipv4("holdfast.ip", "Address"),
  ipv6 = ProtoField.ipv6("holdfast.ipv6", "Address"),
  prefix = ProtoField.uint8("holdfast.prefix", "Prefix length"),
  mac = ProtoField.ether("holdfast.mac", "MAC"),
  port = ProtoField.uint16("holdfast.port", "Port"),
  -- holdings, epochs, groups
  holding = ProtoField.none("holdfast.holding", "Holding"),
  relayed = ProtoField.none("holdfast.relayed", "Relayed ownership record"),
  owner = ProtoField.uint32("holdfast.owner", "Owner (group)"),
  epoch_counter = ProtoField.uint32("holdfast.epoch.counter", "Epoch counter"),
  epoch_holder = ProtoField.uint32("holdfast.epoch.holder", "Epoch holder"),
  holder_boot = ProtoField.uint32("holdfast.holder_boot", "Holder boot epoch"),
  heard = ProtoField.none("holdfast.heard", "Peer heard"),
  heard_node = ProtoField.uint32("holdfast.heard.node", "Node"),
  heard_boot = ProtoField.uint32("holdfast.heard.boot", "Its boot epoch"),
  heard_age = ProtoField.uint32("holdfast.heard.age_ms", "Last heard (ms ago)"),
  target = ProtoField.uint32("holdfast.target", "Target node (0: all)"),
  request_id = ProtoField.uint32("holdfast.request_id", "Request id"),
  reason = ProtoField.uint8("holdfast.reason", "Reason", base.DEC, REASON),
  scope = ProtoField.uint8("holdfast.scope", "Scope", base.DEC, SCOPE),
  share_index = ProtoField.uint16("holdfast.share.index", "Share index"),
  share_of = ProtoField.uint16("holdfast.share.of", "Shares"),
  connection = ProtoField.none("holdfast.connection", "Connection"),
  count = ProtoField.uint16("holdfast.count", "Count"),
  mode = ProtoField.uint8("holdfast.mode", "Failback mode", base.DEC, FAILBACK),
  generation = ProtoField.uint32("holdfast.generation", "Draining set generation"),
  part = ProtoField.uint16("holdfast.part", "Part"),
  parts = ProtoField.uint16("holdfast.parts", "Parts"),
  -- CONN-STATE
  has_tuple = ProtoField.uint8("holdfast.has_tuple", "Has four-tuple", base.DEC, BOOL),
  snd_una = ProtoField.uint32("holdfast.snd_una", "snd_una"),
  snd_nxt = ProtoField.uint32("holdfast.snd_nxt", "snd_nxt"),
  rcv_nxt = ProtoField.uint32("holdfast.rcv_nxt", "rcv_nxt"),
  snd_wnd = ProtoField.uint32("holdfast.snd_wnd", "snd_wnd"),
  rcv_wnd = ProtoField.uint32("holdfast.rcv_wnd", "rcv_wnd"),
  mss = ProtoField.uint16("holdfast.mss", "MSS"),
  snd_wscale = ProtoField.uint8("holdfast.snd_wscale", "Send window scale"),
  rcv_wscale = ProtoField.uint8("holdfast.rcv_wscale", "Receive window scale"),
  sack = ProtoField.uint8("holdfast.sack", "SACK permitted", base.DEC, BOOL),
  timestamps = ProtoField.uint8("holdfast.timestamps", "Timestamps", base.DEC, BOOL),
  ts_val = ProtoField.uint32("holdfast.ts_val", "Last TSval"),
  ts_ecr = ProtoField.uint32("holdfast.ts_ecr", "Last TSecr"),
  fin_received = ProtoField.uint8("holdfast.fin_received", "FIN received", base.DEC, BOOL),
  fin_sent = ProtoField.uint8("holdfast.fin_sent", "FIN sent", base.DEC, BOOL),
  unacked_len = ProtoField.uint32("holdfast.unacked_len", "Unacknowledged bytes (whole state)"),
  checkpoint_len = ProtoField.uint32("holdfast.checkpoint_len", "Checkpoint bytes (whole state)"),
  offset = ProtoField.uint32("holdfast.offset", "Offset of this part"),
  chunk = ProtoField.bytes("holdfast.chunk", "This part's bytes"),
  -- FETCH / FETCHED
  fetch_seq = ProtoField.uint32("holdfast.fetch.seq", "Client sequence number"),
  fetch_len = ProtoField.uint32("holdfast.fetch.len", "Bytes asked for"),
  gone = ProtoField.uint8("holdfast.gone", "Gone", base.DEC, BOOL),
  data = ProtoField.bytes("holdfast.data", "Client bytes"),
}
local list = {}
for _, v in pairs(f) do list[#list + 1] = v end
p.fields = list

local e_malformed = ProtoExpert.new("holdfast.malformed", "Malformed Holdfast message",
  expert.group.MALFORMED, expert.severity.ERROR)
p.experts = { e_malformed }

-- A reader over the body: each call adds one field and moves on.
local R = {}
R.__index = R
local function reader(buf, at, stop) return setmetatable({ buf = buf, at = at, stop = stop }, R) end
function R:left() return self.stop - self.at end
function R:take(n) if self:left() < n then error("short") end
  local r = self.buf(self.at, n); self.at = self.at + n; return r end
function R:add(tree, field, n) local r = self:take(n); tree:add(field, r); return r end
function R:u8(tree, field) return self:add(tree, field, 1):uint() end
function R:u16(tree, field) return self:add(tree, field, 2):uint() end
function R:u32(tree, field) return self:add(tree, field, 4):uint() end

function R:epoch(tree)
  self:u32(tree, f.epoch_counter)
  self:u32(tree, f.epoch_holder)
end

function R:ip(tree)
  local fam = self:take(1):uint()
  if fam == 4 then return self:add(tree, f.ipv4, 4)
  elseif fam == 6 then return self:add(tree, f.ipv6, 16)
  else error("bad family") end
end

function R:sock(tree)
  self:ip(tree)
  self:u16(tree, f.port)
end

function R:connection(tree, label)
  local start = self.at
  local t = tree:add(f.connection, self.buf(self.at, 0))
  t:set_text(label or "Connection (service, client)")
  self:sock(t)
  self:sock(t)
  t:set_len(self.at - start)
end

function R:list(tree, item)
  local n = self:u16(tree, f.count)
  for _ = 1, n do item(self, tree) end
end

function R:holding(tree)
  local t = tree:add(f.holding, self.buf(self.at, 16))
  self:u32(t, f.owner)
  self:epoch(t)
  self:u32(t, f.holder_boot)
end

function R:heard(tree)
  local t = tree:add(f.heard, self.buf(self.at, 12))
  self:u32(t, f.heard_node)
  self:u32(t, f.heard_boot)
  self:u32(t, f.heard_age)
end

function R:scope(tree)
  local k = self:u8(tree, f.scope)
  if k == 1 then
    self:u16(tree, f.share_index)
    self:u16(tree, f.share_of)
  elseif k == 2 then
    self:list(tree, function(r, t) r:connection(t) end)
  elseif k ~= 0 then error("bad scope") end
end

function R:ownership(tree, field)
  local start = self.at
  local t = tree:add(field or f.ownership, self.buf(self.at, 0))
  self:u32(t, f.node_id)
  self:u8(t, f.failback)
  self:u8(t, f.snoop)
  self:u8(t, f.assignment)
  self:u8(t, f.miss_count)
  self:u32(t, f.heartbeat_ms)
  self:list(t, function(r, tt) r:u32(tt, f.backup) end)
  self:u8(t, f.arp)
  self:u8(t, f.protocol)
  self:u16(t, f.port_first)
  self:u16(t, f.port_last)
  local n = self:take(1):uint()
  self:add(t, f.application, n)
  self:list(t, function(r, tt)
    local s = r.at
    local a = tt:add(f.address, r.buf(r.at, 0))
    r:ip(a)
    r:u8(a, f.prefix)
    r:add(a, f.mac, 6)
    a:set_len(r.at - s)
  end)
  t:set_len(self.at - start)
end

local BODY = {
  [1] = function(r, t)
    r:ownership(t)
    r:list(t, function(rr, tt) rr:holding(tt) end)
    r:list(t, function(rr, tt) rr:ownership(tt, f.relayed) end)
  end,
  [2] = function(r, t) r:u32(t, f.target) end,
  [3] = function(r, t)
    r:list(t, function(rr, tt) rr:holding(tt) end)
    r:list(t, function(rr, tt) rr:heard(tt) end)
  end,
  [4] = function(r, t)
    r:u32(t, f.owner); r:u32(t, f.request_id); r:epoch(t); r:u32(t, f.holder_boot); r:scope(t)
  end,
  [5] = function(r, t) r:u32(t, f.owner); r:u32(t, f.request_id); r:u8(t, f.reason); r:scope(t) end,
  [7] = function(r, t)
    r:u32(t, f.owner); r:epoch(t); r:scope(t)
    r:list(t, function(rr, tt) rr:ip(tt) end)
  end,
  [8] = function(r, t)
    r:u32(t, f.owner); r:epoch(t); r:u8(t, f.mode)
    r:u32(t, f.generation); r:u16(t, f.part); r:u16(t, f.parts)
    r:list(t, function(rr, tt) rr:connection(tt, "Draining connection (service, client)") end)
  end,
  [9] = function(r, t) r:u32(t, f.owner); r:epoch(t) end,
  [10] = function(r, t)
    r:u32(t, f.owner); r:epoch(t)
    if r:u8(t, f.has_tuple) == 1 then r:connection(t) end
    r:u32(t, f.snd_una); r:u32(t, f.snd_nxt); r:u32(t, f.rcv_nxt)
    r:u32(t, f.snd_wnd); r:u32(t, f.rcv_wnd); r:u16(t, f.mss)
    r:u8(t, f.snd_wscale); r:u8(t, f.rcv_wscale); r:u8(t, f.sack); r:u8(t, f.timestamps)
    r:u32(t, f.ts_val); r:u32(t, f.ts_ecr); r:u8(t, f.fin_received); r:u8(t, f.fin_sent)
    r:u32(t, f.unacked_len); r:u32(t, f.checkpoint_len); r:u32(t, f.offset)
    local n = r:take(4):uint()
    r:add(t, f.chunk, n)
  end,
  [11] = function(r, t)
    r:u32(t, f.owner); r:connection(t); r:u32(t, f.fetch_seq); r:u32(t, f.fetch_len)
  end,
  [12] = function(r, t)
    r:u32(t, f.owner); r:connection(t); r:u32(t, f.fetch_seq); r:u8(t, f.gone)
    local n = r:take(4):uint()
    r:add(t, f.data, n)
  end,
}
BODY[6] = BODY[5]

function p.dissector(buf, pinfo, tree)
  if buf:len() < 64 or buf(0, 4):uint() ~= 0x48465354 then return 0 end
  pinfo.cols.protocol = "HOLDFAST"
  local ty = buf(5, 1):uint()
  local len = buf(28, 4):uint()
  local t = tree:add(p, buf(), "Holdfast control protocol")
  t:add(f.magic, buf(0, 4))
  t:add(f.version, buf(4, 1))
  t:add(f.type, buf(5, 1))
  local fl = t:add(f.flags, buf(6, 2))
  fl:add(f.eligible, buf(6, 2))
  fl:add(f.leaving, buf(6, 2))
  t:add(f.cluster, buf(8, 4))
  t:add(f.sender, buf(12, 4))
  t:add(f.boot_epoch, buf(16, 4))
  t:add(f.seq, buf(20, 8))
  t:add(f.length, buf(28, 4))
  local name = TYPES[ty] or ("type " .. ty)
  pinfo.cols.info = string.format("%s from node %d seq %s", name, buf(12, 4):uint(),
    tostring(buf(20, 8):uint64()))
  if buf:len() ~= 32 + len + 32 then
    t:add_proto_expert_info(e_malformed, "datagram length is not 32 + length + 32")
    return buf:len()
  end
  local body = BODY[ty]
  if body then
    local bt = t:add(buf(32, len), name)
    local r = reader(buf, 32, 32 + len)
    local ok, err = pcall(body, r, bt)
    if not ok then
      bt:add_proto_expert_info(e_malformed, "body: " .. tostring(err))
    elseif r:left() ~= 0 then
      bt:add_proto_expert_info(e_malformed, "trailing bytes in the body")
    end
  elseif ty == 13 then
    -- ALIVE: no body.
    if len ~= 0 then t:add_proto_expert_info(e_malformed, "ALIVE with a body") end
  else
    t:add_proto_expert_info(e_malformed, "unknown message type")
  end
  t:add(f.tag, buf(32 + len, 32))
  return buf:len()
end

DissectorTable.get("udp.port"):add(5405, p)
