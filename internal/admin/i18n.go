package admin

import (
	"net/http"
	"strconv"
	"strings"
)

// languages are the pages' languages, in the order the switch shows them.
var languages = []struct{ Code, Name string }{
	{"en", "English"}, {"zh", "简体中文"}, {"es", "Español"},
}

// messages holds every string the pages show, per language. Every language
// has every key (TestMessagesComplete).
var messages = map[string]map[string]string{
	"en": {
		"health.degraded":    "Charges are not reaching the database: model calls are admitted and their charges kept in the journal.",
		"health.unavailable": "Charges cannot be recorded: model calls are refused until the database is back.",
		"health.store":       "Database", "health.pending": "Charges waiting in the journal", "health.journal": "The journal cannot be written",
		"app": "OpenWebUI Monitor", "nav.overview": "Overview", "nav.users": "Users", "nav.models": "Models",
		"nav.records": "Records", "nav.user": "User", "nav.login": "Sign in", "nav.settings": "Settings", "logout": "Log out", "lang": "Language",
		"login.title": "Sign in", "login.token": "Access token", "login.submit": "Sign in",
		"login.failed": "Wrong access token.", "login.limited": "Too many failed attempts. Wait a minute and try again.",
		"login.notoken": "No access token is configured: set access_token to use the dashboard.",
		"range.today":   "Today", "range.7d": "7 days", "range.month": "This month", "range.30d": "30 days",
		"range.all": "All", "range.custom": "Custom", "from": "From", "to": "To", "apply": "Apply",
		"total.cost": "Cost", "total.calls": "Calls", "total.tokens": "Tokens", "total.users": "Active users",
		"total.models": "Models", "chart.bymodel": "Share by model", "chart.byuser": "Top users",
		"chart.daily": "Daily usage", "metric.cost": "Cost", "metric.calls": "Calls", "nodata": "No usage in this period.",
		"search": "Search", "users.search": "Name or email", "col.name": "Name", "col.email": "Email", "col.role": "Role",
		"col.balance": "Balance", "col.status": "Status", "col.created": "Created", "status.active": "Active",
		"status.blocked": "Blocked", "users.everyone": "Everyone", "prev": "Previous", "next": "Next", "page": "Page", "sort": "Sort",
		"order.asc": "Ascending", "order.desc": "Descending", "user.setbalance": "Set balance", "user.topup": "Top up",
		"user.amount": "Amount", "user.reason": "Reason", "user.block": "Block", "user.unblock": "Unblock",
		"user.history": "Balance history", "user.recent": "Recent records", "user.notfound": "No such user.",
		"col.time": "Time", "col.actor": "By", "col.old": "Before", "col.new": "After", "save": "Save",
		"models.title": "Model prices", "col.model": "Model", "col.input": "Input / 1M tokens",
		"col.output": "Output / 1M tokens", "col.permsg": "Per message", "models.permsghint": "empty: bill by tokens",
		"models.priced": "priced", "models.default": "default price", "models.none": "No models yet: they appear here once used or priced.",
		"saved": "Saved", "records.users": "User IDs (comma-separated)", "records.models": "Models (comma-separated)",
		"export": "Export CSV", "col.user": "User", "col.in": "Input tokens", "col.out": "Output tokens", "col.cost": "Cost",
		"col.after": "Balance after", "col.source": "Source", "none": "Nothing here.", "total": "Total",
		"settings.store": "Database", "settings.owui": "OpenWebUI", "configured": "configured", "notconfigured": "not configured",
		"settings.function": "Filter function", "settings.functionhint": "Paste this key into the Usage Monitor function's api_key valve, and this address into its api_endpoint (as OpenWebUI reaches it).",
		"settings.reachable": "answers", "settings.unreachable": "does not answer", "settings.apikey": "API key", "settings.noapikey": "No api_key (API_KEY) is set: the function's calls are refused.", "settings.show": "Show", "settings.copy": "Copy", "settings.copied": "Copied",
		"settings.endpoint": "Address", "settings.deploy": "Ways to deploy", "settings.deployhint": "Function only: OpenWebUI's filter function reports each answer here. In front of OpenWebUI: this server also gates and meters the model calls that pass through it. The README describes both.",
		"models.saveall": "Save all changes", "models.search": "Filter models", "models.sync": "Sync from base", "models.syncall": "Sync all from bases", "models.test": "Test", "models.testall": "Test all",
		"models.export": "Export prices (JSON)", "models.import": "Import prices (JSON)", "models.testing": "Testing", "models.ok": "works", "models.failed": "failed",
		"col.pricesource": "Price source", "models.own": "own price", "models.inherited": "inherited from", "models.notlisted": "not served by OpenWebUI",
		"models.owuilisted": "Every model OpenWebUI serves, with the price it is charged at and where that price comes from. A model without a price of its own is charged its base model's price, else the default; saving a row gives it a price of its own.", "models.owuinokey": "No openwebui_api_key is set: give it the API key of an OpenWebUI admin.",
		"models.owuinotconfigured": "OpenWebUI is not configured (set openwebui and openwebui_api_key), so this list shows only the models this monitor has seen or priced.", "models.owuiunreachable": "OpenWebUI could not be reached, so this list shows only the models this monitor has seen or priced. The error:",
		"models.testsummary": "{passed} passed, {failed} failed", "models.testfailures": "Failed:",
		"backup.title": "Backup and restore", "backup.hint": "A backup is one JSON file with every user, usage record, model price and balance change.",
		"backup.download": "Download a backup", "restore.title": "Restore from a backup", "restore.file": "Backup file", "restore.check": "Check the file",
		"restore.checking": "Checking the file…", "restore.working": "Restoring…", "restore.previewhint": "The file is a backup. Restoring replaces everything the monitor holds with it:",
		"restore.inbackup": "In the backup", "restore.instore": "Now in the monitor (replaced)", "restore.count.users": "Users", "restore.count.records": "Usage records",
		"restore.count.model_prices": "Model prices", "restore.count.balance_changes": "Balance changes",
		"restore.replacenote": "All data now in the monitor is replaced. It is saved to a backup file on the server first.", "restore.emptynote": "The monitor holds no data yet, so nothing is replaced.", "restore.confirm": "Replace all data", "restore.cancel": "Cancel",
		"restore.done": "Restored: the monitor now holds the backup's data.", "restore.imported": "Restored", "restore.replaced": "Replaced",
		"restore.savedto": "The previous data was saved on the server to", "restore.nothingsaved": "The monitor held no data before, so nothing needed saving.",
		"restore.nofile": "Choose a backup file first.", "restore.unreadable": "The file could not be read:", "restore.notbackup": "The file is not a backup:",
		"restore.notjson": "it is not a JSON file.", "restore.notobject": "it has no version and data, as the monitor's backups have.",
		"restore.cannot": "The backup cannot be restored:", "restore.toolarge": "The file is too large to restore.", "restore.failed": "The restore failed:",
		"user.delete": "Delete user", "user.deletehint": "Deleting removes this user together with all their usage records (%s) and their balance history; their usage leaves every total. It cannot be undone, except by restoring a backup. If they use OpenWebUI again, they come back as a new user with the starting balance. To stop them but keep their history, block them instead.",
		"user.deletetype": "To confirm, type", "user.deletenow": "Delete the user and their records", "user.deletemismatch": "Type exactly what is shown to confirm.", "user.deleted": "Deleted %s with their usage records and balance history.",
		"settings.owuihint": "OpenWebUI's address and admin key (openwebui, openwebui_api_key) let the monitor list models.",
		"records.user":      "User (name, email or ID)", "records.userhint": "Any part of a user's name or email, or their ID", "col.purpose": "Purpose",
		"records.estimated": "Estimated: the provider reported no token counts, so they were counted here from the text (an estimate).",
		"sort.use_time":     "Time", "sort.cost": "Cost", "sort.input_tokens": "Input tokens", "sort.output_tokens": "Output tokens",
		"sort.model_name": "Model", "sort.nickname": "User name", "sort.user_id": "User ID", "sort.balance_after": "Balance after",
		"rstatus.pending": "pending", "rstatus.completed": "completed", "rstatus.cancelled": "cancelled", "rstatus.failed": "failed", "rstatus.expired": "expired",
		"source.function": "function", "source.edge": "gate", "source.websocket": "websocket tap", "source.provider": "provider meter",
		"purpose.chat": "chat", "purpose.title": "title", "purpose.tags": "tags", "purpose.follow_ups": "follow-ups", "purpose.queries": "search queries",
		"purpose.autocomplete": "autocomplete", "purpose.emoji": "emoji", "purpose.image_prompt": "image prompt", "purpose.moa": "mixture of agents",
		"purpose.compaction": "compaction", "purpose.memory": "memory", "purpose.function_calling": "function calling", "purpose.tool_round": "tool round",
		"purpose.embeddings": "embeddings", "purpose.images": "images", "purpose.audio": "audio", "purpose.task": "task",
		"breakdown.purpose": "By purpose", "breakdown.source": "By path", "breakdown.purposecol": "Purpose",
		"breakdown.sourcecol": "Path", "breakdown.unknown": "unknown", "breakdown.tokens": "Input and output tokens",
		"tokens.input": "Input", "tokens.output": "Output", "tokens.cached": "of which cached",
		"tokens.reasoning": "of which reasoning", "user.usage": "Usage, all time",
		"settings.currency": "Currency", "settings.sessions": "Sessions last 12 hours and end when the server restarts.",
	},
	"zh": {
		"health.degraded":    "扣费暂时无法写入数据库：模型调用照常放行，扣费保存在日志中。",
		"health.unavailable": "无法记录扣费：在数据库恢复前拒绝模型调用。",
		"health.store":       "数据库", "health.pending": "日志中待写入的扣费", "health.journal": "日志无法写入",
		"app": "OpenWebUI 监控", "nav.overview": "概览", "nav.users": "用户", "nav.models": "模型",
		"nav.records": "记录", "nav.user": "用户", "nav.login": "登录", "nav.settings": "设置", "logout": "退出登录", "lang": "语言",
		"login.title": "登录", "login.token": "访问令牌", "login.submit": "登录",
		"login.failed": "访问令牌错误。", "login.limited": "失败次数过多，请一分钟后再试。",
		"login.notoken": "未配置访问令牌：请设置 access_token 以使用面板。",
		"range.today":   "今天", "range.7d": "7 天", "range.month": "本月", "range.30d": "30 天",
		"range.all": "全部", "range.custom": "自定义", "from": "开始", "to": "结束", "apply": "应用",
		"total.cost": "费用", "total.calls": "调用次数", "total.tokens": "令牌数", "total.users": "活跃用户",
		"total.models": "模型数", "chart.bymodel": "模型占比", "chart.byuser": "用户排行",
		"chart.daily": "每日用量", "metric.cost": "费用", "metric.calls": "调用次数", "nodata": "此期间没有用量。",
		"search": "搜索", "users.search": "姓名或邮箱", "col.name": "姓名", "col.email": "邮箱", "col.role": "角色",
		"col.balance": "余额", "col.status": "状态", "col.created": "创建时间", "status.active": "正常",
		"status.blocked": "已停用", "users.everyone": "全部", "prev": "上一页", "next": "下一页", "page": "页", "sort": "排序",
		"order.asc": "升序", "order.desc": "降序", "user.setbalance": "设置余额", "user.topup": "充值",
		"user.amount": "金额", "user.reason": "原因", "user.block": "停用", "user.unblock": "启用",
		"user.history": "余额变动", "user.recent": "最近记录", "user.notfound": "用户不存在。",
		"col.time": "时间", "col.actor": "操作者", "col.old": "变动前", "col.new": "变动后", "save": "保存",
		"models.title": "模型价格", "col.model": "模型", "col.input": "输入 / 百万令牌",
		"col.output": "输出 / 百万令牌", "col.permsg": "每条消息", "models.permsghint": "留空：按令牌计费",
		"models.priced": "已定价", "models.default": "默认价格", "models.none": "暂无模型：模型被使用或定价后会出现在这里。",
		"saved": "已保存", "records.users": "用户 ID（逗号分隔）", "records.models": "模型（逗号分隔）",
		"export": "导出 CSV", "col.user": "用户", "col.in": "输入令牌", "col.out": "输出令牌", "col.cost": "费用",
		"col.after": "剩余余额", "col.source": "来源", "none": "暂无数据。", "total": "合计",
		"settings.store": "数据库", "settings.owui": "OpenWebUI", "configured": "已配置", "notconfigured": "未配置",
		"settings.function": "过滤函数", "settings.functionhint": "将此密钥填入 Usage Monitor 函数的 api_key，将此地址填入其 api_endpoint（以 OpenWebUI 能访问到的地址为准）。",
		"settings.reachable": "可以访问", "settings.unreachable": "无法访问", "settings.apikey": "API 密钥", "settings.noapikey": "未设置 api_key（API_KEY）：函数的调用会被拒绝。", "settings.show": "显示", "settings.copy": "复制", "settings.copied": "已复制",
		"settings.endpoint": "地址", "settings.deploy": "部署方式", "settings.deployhint": "仅函数：由 OpenWebUI 的过滤函数上报每条回答。置于 OpenWebUI 之前：本服务还会拦截并计量经过它的模型调用。README 中有两种方式的说明。",
		"models.saveall": "保存全部修改", "models.search": "筛选模型", "models.sync": "从基础模型同步", "models.syncall": "全部从基础模型同步", "models.test": "测试", "models.testall": "全部测试",
		"models.export": "导出价格（JSON）", "models.import": "导入价格（JSON）", "models.testing": "测试中", "models.ok": "可用", "models.failed": "失败",
		"col.pricesource": "价格来源", "models.own": "自有价格", "models.inherited": "继承自", "models.notlisted": "OpenWebUI 未提供",
		"models.owuilisted": "OpenWebUI 提供的全部模型，以及各自实际计费的价格和价格来源。没有自有价格的模型按其基础模型的价格计费，否则按默认价格；保存某一行即为该模型设置自有价格。", "models.owuinokey": "未设置 openwebui_api_key：请填入 OpenWebUI 管理员的 API 密钥。",
		"models.owuinotconfigured": "未配置 OpenWebUI（请设置 openwebui 和 openwebui_api_key），因此这里只列出本监控见过或已定价的模型。", "models.owuiunreachable": "无法访问 OpenWebUI，因此这里只列出本监控见过或已定价的模型。错误：",
		"models.testsummary": "{passed} 个通过，{failed} 个失败", "models.testfailures": "失败的模型：",
		"backup.title": "备份与恢复", "backup.hint": "备份是一个 JSON 文件，包含所有用户、使用记录、模型价格和余额变动。",
		"backup.download": "下载备份", "restore.title": "从备份恢复", "restore.file": "备份文件", "restore.check": "检查文件",
		"restore.checking": "正在检查文件…", "restore.working": "正在恢复…", "restore.previewhint": "该文件是一个备份。恢复会用它替换监控中的全部数据：",
		"restore.inbackup": "备份中", "restore.instore": "监控中现有（将被替换）", "restore.count.users": "用户", "restore.count.records": "使用记录",
		"restore.count.model_prices": "模型价格", "restore.count.balance_changes": "余额变动",
		"restore.replacenote": "监控中现有的全部数据将被替换。替换前会先保存为服务器上的备份文件。", "restore.emptynote": "监控中还没有数据，因此不会替换任何内容。", "restore.confirm": "替换全部数据", "restore.cancel": "取消",
		"restore.done": "恢复完成：监控现在保存的是备份中的数据。", "restore.imported": "已恢复", "restore.replaced": "已替换",
		"restore.savedto": "之前的数据已保存在服务器上：", "restore.nothingsaved": "监控之前没有数据，因此无需保存。",
		"restore.nofile": "请先选择备份文件。", "restore.unreadable": "无法读取该文件：", "restore.notbackup": "该文件不是备份：",
		"restore.notjson": "它不是 JSON 文件。", "restore.notobject": "它没有监控备份应有的 version 和 data。",
		"restore.cannot": "无法恢复该备份：", "restore.toolarge": "文件太大，无法恢复。", "restore.failed": "恢复失败：",
		"user.delete": "删除用户", "user.deletehint": "删除会移除该用户及其全部使用记录（%s 条）和余额变动，其用量也会从所有统计中消失。此操作无法撤销，只能通过恢复备份找回。如果该用户再次使用 OpenWebUI，会以初始余额作为新用户重新出现。若想停止其使用但保留历史，请改为停用。",
		"user.deletetype": "请输入以下内容以确认：", "user.deletenow": "删除用户及其记录", "user.deletemismatch": "请准确输入所显示的内容以确认。", "user.deleted": "已删除 %s 及其使用记录和余额变动。",
		"settings.owuihint": "OpenWebUI 的地址和管理员密钥（openwebui、openwebui_api_key）用于获取模型列表。",
		"records.user":      "用户（姓名、邮箱或 ID）", "records.userhint": "用户姓名或邮箱的任意部分，或用户 ID", "col.purpose": "用途",
		"records.estimated": "估算：服务商未报告令牌数，由本监控根据文本计算（估计值）。",
		"sort.use_time":     "时间", "sort.cost": "费用", "sort.input_tokens": "输入令牌", "sort.output_tokens": "输出令牌",
		"sort.model_name": "模型", "sort.nickname": "用户名", "sort.user_id": "用户 ID", "sort.balance_after": "剩余余额",
		"rstatus.pending": "进行中", "rstatus.completed": "已完成", "rstatus.cancelled": "已取消", "rstatus.failed": "失败", "rstatus.expired": "已过期",
		"source.function": "函数", "source.edge": "网关", "source.websocket": "WebSocket 监听", "source.provider": "服务商计量",
		"purpose.chat": "对话", "purpose.title": "标题", "purpose.tags": "标签", "purpose.follow_ups": "追问建议", "purpose.queries": "搜索查询",
		"purpose.autocomplete": "自动补全", "purpose.emoji": "表情", "purpose.image_prompt": "图像提示词", "purpose.moa": "多模型合成",
		"purpose.compaction": "上下文压缩", "purpose.memory": "记忆", "purpose.function_calling": "函数调用", "purpose.tool_round": "工具调用轮次",
		"purpose.embeddings": "向量嵌入", "purpose.images": "图像", "purpose.audio": "音频", "purpose.task": "任务",
		"breakdown.purpose": "按用途", "breakdown.source": "按路径", "breakdown.purposecol": "用途",
		"breakdown.sourcecol": "路径", "breakdown.unknown": "未知", "breakdown.tokens": "输入与输出 Token",
		"tokens.input": "输入", "tokens.output": "输出", "tokens.cached": "其中缓存命中",
		"tokens.reasoning": "其中推理", "user.usage": "用量（全部时间）",
		"settings.currency": "货币", "settings.sessions": "会话有效期为 12 小时，服务器重启后失效。",
	},
	"es": {
		"health.degraded":    "Los cargos no llegan a la base de datos: las llamadas se admiten y sus cargos quedan en el diario.",
		"health.unavailable": "No se pueden registrar cargos: las llamadas se rechazan hasta que vuelva la base de datos.",
		"health.store":       "Base de datos", "health.pending": "Cargos en espera en el diario", "health.journal": "No se puede escribir el diario",
		"app": "Monitor de OpenWebUI", "nav.overview": "Resumen", "nav.users": "Usuarios", "nav.models": "Modelos",
		"nav.records": "Registros", "nav.user": "Usuario", "nav.login": "Iniciar sesión", "nav.settings": "Ajustes", "logout": "Cerrar sesión", "lang": "Idioma",
		"login.title": "Iniciar sesión", "login.token": "Token de acceso", "login.submit": "Entrar",
		"login.failed": "Token de acceso incorrecto.", "login.limited": "Demasiados intentos fallidos. Espera un minuto y vuelve a intentarlo.",
		"login.notoken": "No hay token de acceso configurado: define access_token para usar el panel.",
		"range.today":   "Hoy", "range.7d": "7 días", "range.month": "Este mes", "range.30d": "30 días",
		"range.all": "Todo", "range.custom": "Personalizado", "from": "Desde", "to": "Hasta", "apply": "Aplicar",
		"total.cost": "Coste", "total.calls": "Llamadas", "total.tokens": "Tokens", "total.users": "Usuarios activos",
		"total.models": "Modelos", "chart.bymodel": "Reparto por modelo", "chart.byuser": "Usuarios principales",
		"chart.daily": "Uso diario", "metric.cost": "Coste", "metric.calls": "Llamadas", "nodata": "Sin uso en este periodo.",
		"search": "Buscar", "users.search": "Nombre o correo", "col.name": "Nombre", "col.email": "Correo", "col.role": "Rol",
		"col.balance": "Saldo", "col.status": "Estado", "col.created": "Creado", "status.active": "Activo",
		"status.blocked": "Bloqueado", "users.everyone": "Todos", "prev": "Anterior", "next": "Siguiente", "page": "Página", "sort": "Ordenar",
		"order.asc": "Ascendente", "order.desc": "Descendente", "user.setbalance": "Fijar saldo", "user.topup": "Recargar",
		"user.amount": "Importe", "user.reason": "Motivo", "user.block": "Bloquear", "user.unblock": "Desbloquear",
		"user.history": "Historial de saldo", "user.recent": "Registros recientes", "user.notfound": "No existe ese usuario.",
		"col.time": "Fecha", "col.actor": "Por", "col.old": "Antes", "col.new": "Después", "save": "Guardar",
		"models.title": "Precios de modelos", "col.model": "Modelo", "col.input": "Entrada / 1M tokens",
		"col.output": "Salida / 1M tokens", "col.permsg": "Por mensaje", "models.permsghint": "vacío: cobrar por tokens",
		"models.priced": "con precio", "models.default": "precio por defecto", "models.none": "Aún no hay modelos: aparecen aquí al usarse o al ponerles precio.",
		"saved": "Guardado", "records.users": "IDs de usuario (separados por comas)", "records.models": "Modelos (separados por comas)",
		"export": "Exportar CSV", "col.user": "Usuario", "col.in": "Tokens de entrada", "col.out": "Tokens de salida", "col.cost": "Coste",
		"col.after": "Saldo después", "col.source": "Origen", "none": "Nada por aquí.", "total": "Total",
		"settings.store": "Base de datos", "settings.owui": "OpenWebUI", "configured": "configurado", "notconfigured": "sin configurar",
		"settings.function": "Función de filtro", "settings.functionhint": "Pega esta clave en la válvula api_key de la función Usage Monitor, y esta dirección en su api_endpoint (tal como OpenWebUI la alcanza).",
		"settings.reachable": "responde", "settings.unreachable": "no responde", "settings.apikey": "Clave API", "settings.noapikey": "No hay api_key (API_KEY): las llamadas de la función se rechazan.", "settings.show": "Mostrar", "settings.copy": "Copiar", "settings.copied": "Copiada",
		"settings.endpoint": "Dirección", "settings.deploy": "Formas de desplegar", "settings.deployhint": "Solo la función: la función de filtro de OpenWebUI informa aquí de cada respuesta. Delante de OpenWebUI: este servidor además controla y mide las llamadas a modelos que pasan por él. El README describe ambas.",
		"models.saveall": "Guardar todos los cambios", "models.search": "Filtrar modelos", "models.sync": "Sincronizar con la base", "models.syncall": "Sincronizar todos", "models.test": "Probar", "models.testall": "Probar todos",
		"models.export": "Exportar precios (JSON)", "models.import": "Importar precios (JSON)", "models.testing": "Probando", "models.ok": "funciona", "models.failed": "falló",
		"col.pricesource": "Origen del precio", "models.own": "precio propio", "models.inherited": "heredado de", "models.notlisted": "OpenWebUI no lo sirve",
		"models.owuilisted": "Todos los modelos que sirve OpenWebUI, con el precio que se cobra y de dónde sale. Un modelo sin precio propio se cobra al precio de su modelo base, si no al precio por defecto; guardar una fila le da un precio propio.", "models.owuinokey": "No hay openwebui_api_key: pon la clave API de un administrador de OpenWebUI.",
		"models.owuinotconfigured": "OpenWebUI no está configurado (define openwebui y openwebui_api_key), así que la lista solo muestra los modelos que este monitor ha visto o tienen precio.", "models.owuiunreachable": "No se pudo contactar con OpenWebUI, así que la lista solo muestra los modelos que este monitor ha visto o tienen precio. El error:",
		"models.testsummary": "{passed} correctos, {failed} fallidos", "models.testfailures": "Fallaron:",
		"backup.title": "Copia de seguridad y restauración", "backup.hint": "Una copia de seguridad es un archivo JSON con todos los usuarios, registros de uso, precios de modelos y cambios de saldo.",
		"backup.download": "Descargar una copia de seguridad", "restore.title": "Restaurar desde una copia", "restore.file": "Archivo de copia", "restore.check": "Comprobar el archivo",
		"restore.checking": "Comprobando el archivo…", "restore.working": "Restaurando…", "restore.previewhint": "El archivo es una copia de seguridad. Restaurarla reemplaza todo lo que guarda el monitor:",
		"restore.inbackup": "En la copia", "restore.instore": "Ahora en el monitor (se reemplaza)", "restore.count.users": "Usuarios", "restore.count.records": "Registros de uso",
		"restore.count.model_prices": "Precios de modelos", "restore.count.balance_changes": "Cambios de saldo",
		"restore.replacenote": "Se reemplazan todos los datos que hay ahora en el monitor. Antes se guardan en un archivo de copia en el servidor.", "restore.emptynote": "El monitor aún no tiene datos, así que no se reemplaza nada.", "restore.confirm": "Reemplazar todos los datos", "restore.cancel": "Cancelar",
		"restore.done": "Restaurado: el monitor guarda ahora los datos de la copia.", "restore.imported": "Restaurados", "restore.replaced": "Reemplazados",
		"restore.savedto": "Los datos anteriores se guardaron en el servidor en", "restore.nothingsaved": "El monitor no tenía datos, así que no hubo nada que guardar.",
		"restore.nofile": "Elige primero un archivo de copia.", "restore.unreadable": "No se pudo leer el archivo:", "restore.notbackup": "El archivo no es una copia de seguridad:",
		"restore.notjson": "no es un archivo JSON.", "restore.notobject": "no tiene version y data, como las copias del monitor.",
		"restore.cannot": "La copia no se puede restaurar:", "restore.toolarge": "El archivo es demasiado grande para restaurarlo.", "restore.failed": "La restauración falló:",
		"user.delete": "Eliminar usuario", "user.deletehint": "Eliminarlo borra a este usuario junto con todos sus registros de uso (%s) y su historial de saldo; su uso desaparece de todos los totales. No se puede deshacer, salvo restaurando una copia de seguridad. Si vuelve a usar OpenWebUI, reaparece como usuario nuevo con el saldo inicial. Para detenerlo conservando su historial, bloquéalo.",
		"user.deletetype": "Para confirmar, escribe", "user.deletenow": "Eliminar el usuario y sus registros", "user.deletemismatch": "Escribe exactamente lo que se muestra para confirmar.", "user.deleted": "Se eliminó a %s con sus registros de uso y su historial de saldo.",
		"settings.owuihint": "La dirección y la clave de administrador de OpenWebUI (openwebui, openwebui_api_key) permiten listar los modelos.",
		"records.user":      "Usuario (nombre, correo o ID)", "records.userhint": "Cualquier parte del nombre o del correo de un usuario, o su ID", "col.purpose": "Propósito",
		"records.estimated": "Estimado: el proveedor no informó de los tokens, así que se contaron aquí a partir del texto (una estimación).",
		"sort.use_time":     "Fecha", "sort.cost": "Coste", "sort.input_tokens": "Tokens de entrada", "sort.output_tokens": "Tokens de salida",
		"sort.model_name": "Modelo", "sort.nickname": "Nombre de usuario", "sort.user_id": "ID de usuario", "sort.balance_after": "Saldo después",
		"rstatus.pending": "pendiente", "rstatus.completed": "completado", "rstatus.cancelled": "cancelado", "rstatus.failed": "fallido", "rstatus.expired": "caducado",
		"source.function": "función", "source.edge": "pasarela", "source.websocket": "escucha de websocket", "source.provider": "medidor del proveedor",
		"purpose.chat": "chat", "purpose.title": "título", "purpose.tags": "etiquetas", "purpose.follow_ups": "seguimientos", "purpose.queries": "consultas de búsqueda",
		"purpose.autocomplete": "autocompletado", "purpose.emoji": "emoji", "purpose.image_prompt": "prompt de imagen", "purpose.moa": "mezcla de agentes",
		"purpose.compaction": "compactación", "purpose.memory": "memoria", "purpose.function_calling": "llamada a funciones", "purpose.tool_round": "ronda de herramientas",
		"purpose.embeddings": "embeddings", "purpose.images": "imágenes", "purpose.audio": "audio", "purpose.task": "tarea",
		"breakdown.purpose": "Por propósito", "breakdown.source": "Por vía", "breakdown.purposecol": "Propósito",
		"breakdown.sourcecol": "Vía", "breakdown.unknown": "desconocido", "breakdown.tokens": "Tokens de entrada y de salida",
		"tokens.input": "Entrada", "tokens.output": "Salida", "tokens.cached": "de ellos en caché",
		"tokens.reasoning": "de ellos de razonamiento", "user.usage": "Uso, desde el principio",
		"settings.currency": "Moneda", "settings.sessions": "Las sesiones duran 12 horas y terminan cuando el servidor se reinicia.",
	},
}

// language picks the page language: the lang cookie, then Accept-Language,
// then English.
func language(r *http.Request) string {
	if c, err := r.Cookie("lang"); err == nil {
		if _, ok := messages[c.Value]; ok {
			return c.Value
		}
	}
	best, bestQ := "en", -1.0
	for i, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		primary, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if _, ok := messages[primary]; !ok {
			continue
		}
		q := 1.0 - float64(i)*0.0001 // earlier wins among equals
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f - float64(i)*0.0001
			}
		}
		if q > bestQ {
			best, bestQ = primary, q
		}
	}
	return best
}

// translate returns the text of key in lang; a missing key shows itself.
func translate(lang, key string) string {
	if s, ok := messages[lang][key]; ok {
		return s
	}
	if s, ok := messages["en"][key]; ok {
		return s
	}
	return key
}
