-- plan.lua: drives the real daemon over the milter protocol (miltertest)
-- from a plan file, and prints what the filter answered, one fact a line,
-- for tests/t_milter.sh to assert on.
--
--   miltertest -s plan.lua -D socket=inet:PORT@127.0.0.1 -D plan=FILE
--
-- A plan line is either "connect" (a new SMTP connection; the first message
-- makes one by itself) or one message: tab-separated key=value fields:
--   qid=Q        the queue id, given as macro "i" ...
--   qidat=S      ... at MAIL ("mail", the default) or at end of message
--                ("eom", where Postfix gives it); "none" gives no id
--   file=PATH    the message, headers and body, LF or CRLF line ends
--   abort=N      send N bytes of body, then abort the message
--   reply=TEXT   the SMTP reply expected ("550 5.7.0 text"); miltertest
--                can only compare a reply, not read it
--   quarantine=TEXT, subject=TEXT: the quarantine reason and new Subject
--                expected (compared the same way)
--   ip=A helo=H  a new connection from that client address and HELO
--   from=ADDR    the envelope sender (default sender@example.com)
--   rcpt=A,B     the recipients (default rcpt@example.net)
--   auth=USER    the {auth_authen} macro at MAIL
-- Facts printed, each line "Q key=value":
--   Q reply=c|a|r|t|d|y|q    the final answer to end of message (letter)
--   Q replytext=yes|no       the reply was exactly the reply= text
--   Q quarantine=yes|no      a quarantine request came (quarantined=yes|no
--                            when it had the quarantine= reason)
--   Q changed.Subject=yes|no the Subject was changed (subject=yes|no
--                            when to the subject= text)
--   Q add.NAME=[VALUE]       a header added (one line per header)
--   Q delete.NAME=I          a header deleted (chgheader, empty value)
--   Q skip=yes|no            the filter asked to skip the rest of the body
--   Q aborted=yes            the message was aborted as planned
--   Q early=STAGE:LETTER     a stage before end of message did not go on
--                            (STAGE connect, helo, mail or rcpt N)
-- Any protocol failure ends the script with "ERROR step: reason", exit 1.

local step = "start"
local conn = nil

-- Fails loudly: miltertest itself would exit 1 and print nothing.
local function try(what, err)
	step = what
	if err ~= nil then
		error(what .. ": " .. tostring(err), 0)
	end
end

local function say(qid, key, value)
	print(qid .. " " .. key .. "=" .. value)
end

local function yesno(b)
	return b and "yes" or "no"
end

-- Headers {name, value} and body (CRLF line ends) of a message file.
-- Folded values keep their line breaks as bare LF, as Postfix sends them;
-- the space after the colon is left for miltertest to add (LEADSPC).
local function read_message(path)
	local f = io.open(path, "rb")
	if f == nil then
		error("cannot read " .. path, 0)
	end
	local data = f:read("a"):gsub("\r\n", "\n")
	f:close()
	local head, body = data:match("^(.-)\n\n(.*)$")
	if head == nil then
		head, body = data, ""
	end
	local hdrs = {}
	for line in (head .. "\n"):gmatch("(.-)\n") do
		if line:match("^[ \t]") and #hdrs > 0 then
			local h = hdrs[#hdrs]
			h[2] = h[2] .. "\n" .. line
		else
			local name, value = line:match("^([^:%s]+):(.*)$")
			if name == nil then
				error(path .. ": not a header: " .. line, 0)
			end
			hdrs[#hdrs + 1] = {name, (value:gsub("^ ", ""))}
		end
	end
	return hdrs, (body:gsub("\n", "\r\n"))
end

local function parse_line(line)
	local m = {}
	for field in line:gmatch("[^\t]+") do
		local k, v = field:match("^([^=]+)=(.*)$")
		if k == nil then
			error("plan: bad field: " .. field, 0)
		end
		m[k] = v
	end
	return m
end

-- Opens a connection; returns the stage that did not go on, if any.
local function connect(ip, helo)
	if conn ~= nil then
		mt.disconnect(conn)
	end
	step = "connect"
	conn = mt.connect(socket, 50, 0.1)
	if conn == nil then
		error("cannot connect to " .. socket, 0)
	end
	try("conninfo", mt.conninfo(conn, "client.example.org",
				    ip or "192.0.2.7"))
	local r = mt.getreply(conn)
	if r ~= SMFIR_CONTINUE then
		return "connect:" .. string.char(r)
	end
	try("helo", mt.helo(conn, helo or "helo.example.org"))
	r = mt.getreply(conn)
	if r ~= SMFIR_CONTINUE then
		return "helo:" .. string.char(r)
	end
	return nil
end

-- Every header added under one name, and the indexes deleted.
local function report_headers(qid, name)
	local i = 0
	while true do
		local v = mt.getheader(conn, name, i)
		if v == nil then
			break
		end
		say(qid, "add." .. name, "[" .. v .. "]")
		i = i + 1
	end
	for idx = 1, 9 do
		if mt.eom_check(conn, MT_HDRDELETE, name, idx) then
			say(qid, "delete." .. name, tostring(idx))
		end
	end
end

-- Sends the body in chunks libmilter accepts (at most 65535 bytes); stops
-- early when the filter asks to skip. Returns whether it asked.
local function send_body(body, limit)
	local sent = 0
	while sent < #body and sent < limit do
		local n = math.min(60000, #body - sent, limit - sent)
		try("body", mt.bodystring(conn, body:sub(sent + 1, sent + n)))
		sent = sent + n
		local r = mt.getreply(conn)
		if r == SMFIR_SKIP then
			return true
		elseif r ~= SMFIR_CONTINUE then
			error("body: unexpected reply " .. string.char(r), 0)
		end
	end
	return false
end

local function send_message(m)
	local qid = m.qid or "NOQUEUE"
	local at = m.qidat or "mail"
	local hdrs, body = read_message(m.file)

	if conn == nil or m.ip ~= nil or m.helo ~= nil then
		local early = connect(m.ip, m.helo)
		if early ~= nil then
			say(qid, "early", early)
			conn = nil
			return
		end
	end
	-- Macros of a stage replace the previous message's: always send some.
	local auth = m.auth or ""
	if at == "mail" then
		mt.macro(conn, SMFIC_MAIL, "i", qid, "{auth_authen}", auth)
	else
		mt.macro(conn, SMFIC_MAIL, "{auth_authen}", auth)
	end
	try("mail " .. qid, mt.mailfrom(conn, "<" ..
					(m.from or "sender@example.com") .. ">"))
	local r = mt.getreply(conn)
	if r ~= SMFIR_CONTINUE then
		say(qid, "early", "mail:" .. string.char(r))
		return
	end
	local n, taken = 0, 0
	for rcpt in (m.rcpt or "rcpt@example.net"):gmatch("[^,]+") do
		n = n + 1
		try("rcpt " .. qid, mt.rcptto(conn, "<" .. rcpt .. ">"))
		r = mt.getreply(conn)
		if r ~= SMFIR_CONTINUE then
			say(qid, "early", "rcpt " .. n .. ":" .. string.char(r))
		else
			taken = taken + 1
		end
	end
	if taken == 0 then
		try("abort " .. qid, mt.abort(conn))
		return
	end
	for _, h in ipairs(hdrs) do
		if #h[1] + #h[2] > 900 then
			error(m.file .. ": header too long for miltertest", 0)
		end
		try("header " .. h[1], mt.header(conn, h[1], h[2]))
	end

	if m.abort ~= nil then
		send_body(body, tonumber(m.abort))
		try("abort " .. qid, mt.abort(conn))
		say(qid, "aborted", "yes")
		return
	end
	say(qid, "skip", yesno(send_body(body, #body)))

	if at == "eom" then
		-- SMFIC_BODYEOB: macros sent just before end of message.
		mt.macro(conn, string.byte("E"), "i", qid)
	end
	try("eom " .. qid, mt.eom(conn))
	say(qid, "reply", string.char(mt.getreply(conn)))
	if m.reply ~= nil then
		local code, xcode, text = m.reply:match("^(%d+) ([%d.]+) (.*)$")
		say(qid, "replytext", yesno(code ~= nil and
			mt.eom_check(conn, MT_SMTPREPLY, code, xcode, text)))
	end
	say(qid, "quarantine", yesno(mt.eom_check(conn, MT_QUARANTINE)))
	if m.quarantine ~= nil then
		say(qid, "quarantined", yesno(mt.eom_check(conn, MT_QUARANTINE,
							    m.quarantine)))
	end
	say(qid, "changed.Subject", yesno(mt.eom_check(conn, MT_HDRCHANGE,
							"Subject")))
	if m.subject ~= nil then
		say(qid, "subject", yesno(mt.eom_check(conn, MT_HDRCHANGE,
						       "Subject", m.subject)))
	end
	for _, name in ipairs({"X-Virus-Scanned", "X-Virus-Status",
			      "Subject", "X-Rule", "X-Spam-Status"}) do
		report_headers(qid, name)
	end
end

local function run()
	mt.set_timeout(60)
	for line in io.lines(plan) do
		if line == "connect" then
			connect()
		elseif line ~= "" then
			send_message(parse_line(line))
		end
	end
	if conn ~= nil then
		mt.disconnect(conn)
	end
end

local ok, err = pcall(run)
if not ok then
	print("ERROR " .. step .. ": " .. tostring(err))
	os.exit(1)
end
print("DONE")
