-- A real-client check of `pnnc lsp` with Neovim's built-in LSP client
-- (Neovim 0.7 or later), headless:
--
--   PNNC=target/debug/pnnc nvim --headless -u NONE -c "luafile editors/nvim/check.lua"
--
-- Opens std-models/resnet20.pnn (clean: no diagnostics; a hover on a layer
-- shows its shape and levels; go to definition on a block use lands in
-- std-models/blocks/resnet.pnn) and tests/ui/E0100_non_he.pnn (diagnostics
-- arrive at the right lines). Prints one line per check; exits 0 when all
-- pass, 1 otherwise. Run from the repository root (tests/nvim.rs does).

local pnnc = os.getenv("PNNC") or "pnnc"
local timeout_ms = 30000
local failures = 0

local function say(line)
  io.stdout:write(line .. "\n")
end

local function check(ok, what)
  if ok then
    say("ok: " .. what)
  else
    failures = failures + 1
    say("FAILED: " .. what)
  end
end

local function finish()
  say(failures == 0 and "nvim check: all passed" or ("nvim check: " .. failures .. " failed"))
  vim.cmd(failures == 0 and "qall!" or "cquit! 1")
end

-- Diagnostics published per URI, counted as they arrive.
local published = {}
local client_id = vim.lsp.start_client({
  name = "pnnc",
  cmd = { pnnc, "lsp" },
  root_dir = vim.fn.getcwd(),
  handlers = {
    ["textDocument/publishDiagnostics"] = function(err, result, ctx, config)
      published[result.uri] = result.diagnostics
      vim.lsp.diagnostic.on_publish_diagnostics(err, result, ctx, config)
    end,
  },
})
check(client_id ~= nil, "pnnc lsp starts (" .. pnnc .. ")")
if client_id == nil then
  finish()
  return
end

-- Open `path` in a buffer attached to the server; wait for its diagnostics.
local function open(path)
  vim.cmd("edit " .. vim.fn.fnameescape(path))
  local buf = vim.api.nvim_get_current_buf()
  vim.lsp.buf_attach_client(buf, client_id)
  local uri = vim.uri_from_bufnr(buf)
  local arrived = vim.wait(timeout_ms, function()
    return published[uri] ~= nil
  end, 20)
  check(arrived, "diagnostics arrive for " .. path)
  return buf, uri, published[uri] or {}
end

-- 0-based line and column of the first `needle` in the buffer.
local function find(buf, needle)
  for i, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    local col = line:find(needle, 1, true)
    if col then
      return i - 1, col - 1
    end
  end
  return nil, nil
end

local function request(buf, method, line, col)
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    position = { line = line, character = col },
  }
  local answers = vim.lsp.buf_request_sync(buf, method, params, timeout_ms) or {}
  local answer = answers[client_id] or {}
  return answer.result
end

-- The clean model: no diagnostics, hover and definition answer.
local model, _, model_diags = open("std-models/resnet20.pnn")
check(#model_diags == 0, "resnet20.pnn has no diagnostics (got " .. #model_diags .. ")")

local line, col = find(model, "conv(16, 3, padding: 1)")
local hover = line and request(model, "textDocument/hover", line, col + 1)
local text = hover and hover.contents and (hover.contents.value or "") or ""
check(text:find("output [16, 32, 32]", 1, true) ~= nil, "hover on a layer shows its output shape")
check(text:find("level 0 → 1", 1, true) ~= nil, "hover on a layer shows its levels")

line, col = find(model, "stage(32, 3)")
local def = line and request(model, "textDocument/definition", line, col + 1)
if def and def[1] then
  def = def[1]
end
local target = def and (def.uri or def.targetUri) or ""
check(target:find("blocks/resnet.pnn", 1, true) ~= nil, "definition of a block is in blocks/resnet.pnn")

-- The broken file: nine E0100 errors, the first on its `relu` (line 5).
local broken, _, broken_diags = open("tests/ui/E0100_non_he.pnn")
check(#broken_diags == 9, "E0100_non_he.pnn has 9 diagnostics (got " .. #broken_diags .. ")")
local first = broken_diags[1] or { range = { start = {} } }
check(first.code == "E0100" and first.range.start.line == 4 and first.range.start.character == 14,
  "the first diagnostic is E0100 at relu (line 5, column 15)")
local shown = vim.diagnostic.get(broken)
check(#shown == 9, "Neovim shows the 9 diagnostics in the buffer (got " .. #shown .. ")")

vim.lsp.stop_client(client_id)
finish()
