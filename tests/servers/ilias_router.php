<?php
// A course tree served the way ILIAS's WebDAV serves it, on Debian's sabre/dav (ILIAS's
// own WebDAV is built on sabre/dav too). Node rules from ILIAS's source,
// components/ILIAS/WebDAV/classes/dav/class.ilDAVFile.php:
//   getETag()         sha1(size . name . create date), no ETag for an empty file
//   getLastModified() the object's last update, which a new version moves
//   getSize()         the current version's size
// The tree, its dates and the account come from the JSON manifest ILIAS_DAV_MANIFEST
// names (written by tests/iliasdav.py), read again on every request.
require_once 'Sabre/autoload.php';

$manifest_path = getenv('ILIAS_DAV_MANIFEST');
$manifest = json_decode(file_get_contents($manifest_path), true);
$blob_dir = dirname($manifest_path);

class IliasFile extends Sabre\DAV\File
{
    function __construct(private string $name, private array $node, private string $blob_dir) {}
    function getName() { return $this->name; }
    function get() { return fopen($this->blob_dir . '/' . $this->node['blob'], 'rb'); }
    function getSize() { return $this->node['size']; }
    function getContentType() { return 'application/octet-stream'; }
    function getETag()
    {
        if ($this->getSize() > 0) {
            return '"' . sha1($this->getSize() . $this->getName() . $this->node['created']) . '"';
        }
        return null;
    }
    function getLastModified() { return strtotime($this->node['updated'] . ' UTC'); }
}

class IliasFolder extends Sabre\DAV\Collection
{
    function __construct(private string $name, private array $children) {}
    function getName() { return $this->name; }
    function getChildren() { return array_values($this->children); }
}

function build(array $tree, string $name, string $blob_dir): IliasFolder
{
    $children = [];
    foreach ($tree as $child => $value) {
        $child = (string) $child;
        $children[$child] = isset($value['blob']) && is_string($value['blob'])
            ? new IliasFile($child, $value, $blob_dir) : build($value, $child, $blob_dir);
    }
    return new IliasFolder($name, $children);
}

class IliasAccount extends Sabre\DAV\Auth\Backend\AbstractBasic
{
    function __construct(private string $user, private string $password) {}
    protected function validateUserPass($username, $password)
    {
        return hash_equals($this->user, $username) && hash_equals($this->password, $password);
    }
}

$tree = [];
foreach ($manifest['files'] as $path => $node) {
    $here = &$tree;
    $parts = explode('/', $path);
    $leaf = array_pop($parts);
    foreach ($parts as $part) {
        $here[$part] ??= [];
        $here = &$here[$part];
    }
    $here[$leaf] = $node;
    unset($here);
}
foreach ($manifest['folders'] as $path) {  // empty folders
    $here = &$tree;
    foreach (explode('/', $path) as $part) {
        $here[$part] ??= [];
        $here = &$here[$part];
    }
    unset($here);
}

$server = new Sabre\DAV\Server(build($tree, '', $blob_dir));
$server->setBaseUri($manifest['base']);
$server->addPlugin(new Sabre\DAV\Auth\Plugin(new IliasAccount($manifest['user'], $manifest['password']), 'ILIAS'));
$server->exec();
